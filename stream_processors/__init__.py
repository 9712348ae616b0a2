"""Stream processors (DESIGN §2, §4): faust-streaming agents that micro-batch sensor windows,
run the detectors on them and emit detections at-least-once.

* :mod:`stream_processors.core` — transport-free pipeline core (records → outcomes)
* :mod:`stream_processors.vision`, :mod:`stream_processors.audio` — the two pipelines with
  their config models
* :mod:`stream_processors.runner` — the faust app, delivery, hot reload, summaries
* :mod:`stream_processors.faust_app` — faust's app with a fetcher that resumes as soon as a
  queue drains
* :mod:`stream_processors.cli` — ``skysentry process vision|audio``
"""
