#!/usr/bin/env python3
"""TEST STAND-IN for tensorrtllm_backend's ``tools/fill_template.py`` (TensorRT-LLM 1.1.0rc0,
``triton_backend/tools/fill_template.py``; in the Triton image at /app/tools/fill_template.py).

Same command line: ``fill_template.py [-i|--in_place] FILE key:value[,key:value...]``. Same rules: a backslash
escapes the next character (so ``\\,`` and ``\\:`` stay in a value); ``max_queue_size`` and
``max_queue_delay_microseconds`` default to 0; a key that does not occur in FILE fails the assertion
``key 'K' does not exist in the file FILE.`` (exit 1, traceback); substitution is ``string.Template``'s
safe_substitute, so a ``${key}`` nobody filled stays in the file. Without -i the result is printed.
"""
import argparse
import string
import sys


def split_escaped(text: str, delimiter: str) -> list:
    parts, current, escaped = [], "", False
    for ch in text:
        if escaped:
            current, escaped = current + ch, False
        elif ch == "\\":
            escaped = True
        elif ch == delimiter:
            parts.append(current)
            current = ""
        else:
            current += ch
    return parts + [current]


def fill(file_path: str, substitutions: str, in_place: bool) -> None:
    with open(file_path) as f:
        template = string.Template(f.read())
    values = {"max_queue_size": 0, "max_queue_delay_microseconds": 0}
    for item in split_escaped(substitutions, ","):
        key, value = split_escaped(item, ":")  # a second unescaped ':' fails here, as upstream's unpacking does
        values[key] = value
        assert key in template.template, f"key '{key}' does not exist in the file {file_path}."
    text = template.safe_substitute(values)
    if in_place:
        with open(file_path, "w") as f:
            f.write(text)
    else:
        print(text)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="[STAND-IN] " + __doc__.splitlines()[0])
    p.add_argument("file_path", help="path of the .pbtxt to modify")
    p.add_argument("substitutions", help="substitutions to perform, in the format variable_name_1:value_1,...")
    p.add_argument("--in_place", "-i", action="store_true", help="do the operation in-place")
    args = p.parse_args(argv)
    fill(args.file_path, args.substitutions, args.in_place)


if __name__ == "__main__":
    sys.exit(main())
