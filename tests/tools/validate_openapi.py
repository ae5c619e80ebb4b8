#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Validate a JSON document against a component schema of an OpenAPI 3.0 file.

usage: /usr/bin/python3 validate_openapi.py OPENAPI.json SCHEMA_NAME DOCUMENT.json
Exit 0 when valid, 1 with one line per error when not, 2 on usage/IO errors.

OpenAPI 3.0 is not plain JSON Schema; this converts it:
  * $ref to components are resolved (recursively, cycles kept as refs),
  * allOf: [{$ref: Base}] + own properties means inheritance: Base's
    properties are merged into the schema's own (additionalProperties:
    false would otherwise reject every inherited field),
  * nullable: true admits null,
  * x-softwareone-* vendor keys are dropped.
"""
import json
import sys

import jsonschema

REF_PREFIX = "#/components/schemas/"


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class Converter:
    def __init__(self, components):
        self.components = components
        self.defs = {}

    def ref(self, name):
        if name not in self.defs:
            self.defs[name] = None  # placeholder breaks cycles
            self.defs[name] = self.convert(self.components[name])
        return {"$ref": "#/$defs/" + name}

    def flatten(self, schema):
        """Returns the schema with allOf bases merged in (not converted)."""
        if "$ref" in schema:
            return self.flatten(self.components[schema["$ref"][len(REF_PREFIX):]])
        if "allOf" not in schema:
            return schema
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        props = {}
        required = []
        for base in schema["allOf"]:
            b = self.flatten(base)
            props.update(b.get("properties", {}))
            required += b.get("required", [])
            for k in ("type", "additionalProperties"):
                if k in b and k not in merged:
                    merged[k] = b[k]
        props.update(schema.get("properties", {}))
        merged["properties"] = props
        if required or "required" in schema:
            merged["required"] = sorted(set(required + schema.get("required", [])))
        return merged

    def convert(self, schema):
        if isinstance(schema, list):
            return [self.convert(s) for s in schema]
        if not isinstance(schema, dict):
            return schema
        if "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith(REF_PREFIX):
                raise ValueError("unsupported $ref " + ref)
            return self.ref(ref[len(REF_PREFIX):])
        schema = self.flatten(schema)
        out = {}
        for k, v in schema.items():
            if k.startswith("x-softwareone-") or k in ("nullable", "format", "example"):
                continue
            if k == "properties":
                out[k] = {p: self.convert(s) for p, s in v.items()}
            elif k in ("items", "additionalProperties", "not"):
                out[k] = self.convert(v)
            elif k in ("oneOf", "anyOf", "allOf"):
                out[k] = [self.convert(s) for s in v]
            else:
                out[k] = v
        if schema.get("nullable") is True:
            if "type" in out:
                t = out["type"]
                out["type"] = (t if isinstance(t, list) else [t]) + ["null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = out["enum"] + [None]
            if "$ref" in out or "oneOf" in out:
                out = {"anyOf": [out, {"type": "null"}]}
        return out


def main(argv):
    if len(argv) != 4:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        api = load(argv[1])
        doc = load(argv[3])
    except (OSError, ValueError) as e:
        print("validate_openapi: %s" % e, file=sys.stderr)
        return 2
    components = api.get("components", {}).get("schemas", {})
    if argv[2] not in components:
        print("validate_openapi: no component schema %r" % argv[2], file=sys.stderr)
        return 2
    conv = Converter(components)
    root = conv.ref(argv[2])
    root["$defs"] = conv.defs
    validator = jsonschema.Draft202012Validator(root)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    for e in errors:
        path = "/".join(str(p) for p in e.absolute_path) or "(root)"
        print("%s: %s" % (path, e.message))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
