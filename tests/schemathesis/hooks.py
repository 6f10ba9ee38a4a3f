"""Schemathesis hooks for rentabot's CI run (tests/schemathesis.sh).

schemathesis checks that every request the OpenAPI document allows is accepted
(`positive_data_acceptance`: not a 400). A few refusals cannot be written in a JSON
schema, because they depend on the lab's state or relate two parts of a request; each
has a `code` of its own, named in the 400 responses of the operations that give it.
This check is schemathesis's own, except that a 400 with one of these codes passes.
Every other 400 for a schema-valid request is still a failure: the schema must say it.
"""

import json

import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

# code -> why a schema cannot rule it out.
BEYOND_SCHEMA = {
    # The resource's own max-lock-duration bounds a lock's ttl (and a reservation's).
    "ttl_above_max": "depends on the resource",
    "total_above_max": "depends on the lock's age and the resource",
    "unsatisfiable": "depends on how many resources match and their max-lock-duration",
    # `until` must be after `from` and after now.
    "invalid_window": "relates two fields, and the clock",
    # Two parameters that exclude or contradict each other (tag and expr, id and
    # quantity, ?lock-token= and X-Lock-Token naming different tokens, ...).
    "conflicting_parameters": "relates two parameters",
    # One of several optional criteria is required (id, name, tag or expr).
    "no_criterion": "relates several parameters",
    # Label expressions nest parentheses: not a regular language, so not a pattern.
    "invalid_expr": "a grammar, not a pattern",
}


def _code(response):
    try:
        return json.loads(response.content).get("code")
    except (ValueError, AttributeError):
        return None


@schemathesis.check
def positive_data_acceptance_beyond_schema(ctx, response, case):
    """`positive_data_acceptance`, but a 400 for a rule beyond the schema passes."""
    if response.status_code == 400 and _code(response) in BEYOND_SCHEMA:
        return None
    return positive_data_acceptance(ctx, response, case)
