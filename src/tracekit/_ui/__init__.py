"""`tracekit ui`: a local trace viewer for the file store (private).

Nothing here is imported by `import tracekit`; the CLI loads it when `tracekit ui`
or `tracekit show --html` runs. `index` keeps a SQLite index of the store,
`server` serves a JSON API and the static page in `static/`, `export` writes the
same page as one offline HTML file.
"""
