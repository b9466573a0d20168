"""`labctl view`: a local web page that follows sessions from their documents on disk.

``documents`` serves a session's ``documents.jsonl`` after a byte offset (whole lines only),
``neurons`` the latest epoch's measured activations and derivatives beside the simulator's
or the model's truth, ``server`` the HTTP server (standard library, bound to 127.0.0.1), and
``static/`` the page, its script and its SVG plotting (nothing from the network).
"""
