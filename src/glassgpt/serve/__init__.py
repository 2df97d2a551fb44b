"""serve: glassgpt models over HTTP, in OpenAI's wire format (`glassgpt serve RUN`).

    from glassgpt.serve import create_app
    app = create_app({"demo": load("runs/demo")})      # then uvicorn.run(app, port=8000)

app.py (the endpoints), schemas.py (request bodies from SamplingParams), responses.py
(usage, logprobs and SSE in OpenAI's shapes), errors.py (OpenAI's error shape, the body
limit), worker.py (the decoding thread driving each model's continuous-batching
Scheduler), chat.py (the transcript template), metrics.py (Prometheus).
Needs the `serve` extra: pip install 'glassgpt[serve]'.
"""
from .app import create_app

__all__ = ["create_app"]
