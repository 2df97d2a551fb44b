"""Prometheus metrics of one server (its own registry, so several apps can live in one process)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24)


class Metrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("glassgpt_requests", "HTTP requests answered", ["endpoint", "status"], registry=r)
        self.prompt_tokens = Counter("glassgpt_prompt_tokens", "prompt tokens received", ["model"], registry=r)
        self.cached_tokens = Counter("glassgpt_cached_prompt_tokens", "prompt tokens taken from the prompt cache",
                                     ["model"], registry=r)
        self.generated_tokens = Counter("glassgpt_generated_tokens", "tokens generated", ["model"], registry=r)
        self.queue_length = Gauge("glassgpt_queue_length", "samples waiting to join the batch", ["model"],
                                  registry=r)
        self.batch_size = Gauge("glassgpt_running_batch_size", "samples decoding now", ["model"], registry=r)
        self.time_to_first_token = Histogram("glassgpt_time_to_first_token_seconds",
                                             "from the request's arrival to its first token", ["model"],
                                             buckets=LATENCY_BUCKETS, registry=r)
        self.time_per_token = Histogram("glassgpt_time_per_output_token_seconds",
                                        "between consecutive tokens of one sample", ["model"],
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.drafted = Counter("glassgpt_speculative_drafted_tokens", "tokens the draft model proposed", ["model"],
                               registry=r)
        self.accepted = Counter("glassgpt_speculative_accepted_tokens", "drafted tokens the model accepted",
                                ["model"], registry=r)
        self.acceptance = Gauge("glassgpt_speculative_acceptance_rate", "accepted / drafted so far", ["model"],
                                registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
