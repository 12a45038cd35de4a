"""SDK integrations: one shared engine (`_engine`, `_streams`) and a thin mapper per SDK."""
