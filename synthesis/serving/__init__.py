"""Serving a run's model: the OpenAI-compatible API (`views`), its pages (`pages`, `urls`), the
writes behind them (`deployments`), and the model side: one engine per deployment in this
process (`servers`) with the PII output filter on what leaves it.

Import the modules (`from synthesis.serving.deployments import deployment_create`): this file
imports nothing, so the model side loads without Django's apps.
"""
