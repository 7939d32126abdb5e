"""`edgekd serve`: one bundle behind a small HTTP API and a page (`pip install edgekd[serve]`; no torch).

    api.py     the /predict request and response as data: limits, checks, Hugging Face shape
    info.py    the /info document: labels, artifact, contract, export parity, this device's verify summary
    page.py    the self-contained page at /
    app.py     create_app(classifier): the Starlette app tying them to one loaded Classifier
    server.py  binding the socket and running uvicorn

Nothing is imported here, so `edgekd --help` (which reads the serve command's defaults from
server.py) loads neither numpy nor the web stack.
"""
