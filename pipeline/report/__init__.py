"""The results renderer: stage artifacts -> results/ (tables, figures, claims, README.md, metrics.json, headline.json).

It reads only what the unit stages wrote (inputs.py) and knows nothing of jobs, keys or schedulers; the DVC stage
that runs it is pipeline/aggregate.py.
"""
