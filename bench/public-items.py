#!/usr/bin/env python3
"""Counts the crate's public items from rustdoc's JSON (what `cargo public-api` lists).

Usage: RUSTC_BOOTSTRAP=1 cargo rustdoc --lib [--features ...] -- -Z unstable-options --output-format json
       python3 bench/public-items.py target/doc/psychiq.json
With -v, lists the items too. Prints the number of public modules, types, traits, functions and methods, and the total.
"""
import json, sys, collections

doc = json.load(open(sys.argv[1]))
index, paths = doc["index"], doc["paths"]
root = doc["root"]
counts = collections.Counter()
VERBOSE = "-v" in sys.argv
seen = set()

def kind(item):
    return next(iter(item["inner"])) if isinstance(item["inner"], dict) else item["inner"]

def walk(item_id, depth=0):
    if item_id in seen or str(item_id) not in index:
        return
    seen.add(item_id)
    item = index[str(item_id)]
    if item.get("visibility") != "public" and kind(item) not in ("impl",):
        return
    # `#[doc(hidden)]` items are outside the public API by convention.
    if any("doc(hidden)" in str(attr) for attr in item.get("attrs", [])):
        return
    if VERBOSE and item.get("name"):
        print("  " * depth + f"{kind(item)} {item['name']}")
    k = kind(item)
    inner = item["inner"][k] if isinstance(item["inner"], dict) else {}
    if k == "module":
        counts["modules"] += 1
        for child in inner.get("items", []):
            walk(child, depth + 1)
    elif k == "use":
        target = inner.get("id")
        if target is not None:
            walk(target, depth)
    elif k in ("struct", "enum", "union", "type_alias"):
        counts["types"] += 1
        for v in inner.get("variants", []) or []:
            counts["variants"] += 1
        fields = inner.get("kind", {})
        if isinstance(fields, dict):
            plain = fields.get("plain", {})
            for f in plain.get("fields", []) if isinstance(plain, dict) else []:
                if index.get(str(f), {}).get("visibility") == "public":
                    counts["fields"] += 1
        for impl_id in inner.get("impls", []):
            impl = index.get(str(impl_id))
            if not impl:
                continue
            imp = impl["inner"]["impl"]
            if imp.get("trait") is None and not imp.get("synthetic") and not imp.get("blanket_impl"):
                for m in imp["items"]:
                    mi = index.get(str(m))
                    if mi and mi.get("visibility") == "public":
                        counts["methods"] += 1
    elif k == "trait":
        counts["traits"] += 1
        counts["trait items"] += len(inner.get("items", []))
    elif k == "function":
        counts["functions"] += 1
    elif k in ("constant", "static"):
        counts["constants"] += 1
    elif k == "macro":
        counts["macros"] += 1

walk(root)
total = sum(counts.values())
for key in sorted(counts):
    print(f"{key:12} {counts[key]}")
print(f"{'total':12} {total}")
