"""Parses a Prometheus/OpenMetrics exposition read from stdin with the official
prometheus_client parser and prints it as JSON: {sample name: [[labels, value], ...]}.
Exits non-zero (with the parser's error) when the text is not valid exposition."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

text = sys.stdin.read()
out = {}
for family in text_string_to_metric_families(text):
    for s in family.samples:
        out.setdefault(s.name, []).append([s.labels, s.value])
json.dump(out, sys.stdout)
