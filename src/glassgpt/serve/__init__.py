"""serve: glassgpt models over HTTP, in OpenAI's wire format (`glassgpt serve RUN`).

    from glassgpt.serve import create_app
    app = create_app({"demo": load("runs/demo")})      # then uvicorn.run(app, port=8000)

app.py (endpoints, errors), schemas.py (request bodies from SamplingParams), worker.py
(the decoding thread and the continuous-batching schedulers), chat.py (the transcript
template), metrics.py (Prometheus). Needs the `serve` extra: pip install 'glassgpt[serve]'.
"""
from .app import create_app

__all__ = ["create_app"]
