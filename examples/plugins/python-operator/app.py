"""An evolve curation operator in Python, built as a wasm component with componentize-py.

`banlist` deactivates every judged sample whose prompt contains a banned word, so that a
topic the experiment should not train on leaves the set however it got there (a seed, an
expansion, a mutation). It is the smallest useful operator: no state beyond its config.

Build (see build.sh):  componentize-py -d ../../../sdk/wit -w operator-plugin componentize app -o banlist.wasm
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.exports import operator
from wit_world.imports import types

# The config `init` received. One component instance is one plugin instance, so module
# globals are this instance's state.
WORDS: list[str] = []

SCHEMA = {
    "type": "object",
    "properties": {
        "words": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "minItems": 1,
            "description": "A sample whose prompt contains any of these (case-insensitive) is deactivated.",
        }
    },
    "required": ["words"],
    "additionalProperties": False,
}


class Operator(wit_world.exports.Operator):
    def info(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="banlist",
            version="0.1.0",
            description="Deactivates judged samples whose prompt contains a banned word.",
            config_schema=json.dumps(SCHEMA),
        )

    def init(self, config: str, ctx: types.Context) -> None:
        # The host has checked the config against SCHEMA; what the schema cannot say is
        # checked here and refused as invalid-config, which `evolve check` reports.
        words = json.loads(config).get("words", [])
        if any(not w.strip() for w in words):
            raise Err(types.PluginError_InvalidConfig("words must not be blank"))
        WORDS[:] = [w.lower() for w in words]

    def decide(self, sample: operator.EvaluatedSample) -> list[operator.Action]:
        prompt = sample.prompt.lower()
        if any(word in prompt for word in WORDS):
            return [operator.Action_Deactivate()]
        return []
