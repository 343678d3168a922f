#!/usr/bin/env python3
"""Generates the Python stubs of Quorate's client API from ../../proto with grpcio-tools.

    python3 clients/python/generate.py           # writes src/quorate/... (commit the result)
    python3 clients/python/generate.py --check   # exits 1 if the committed stubs are stale

Only the client port's services are generated (quorate.payments.v1, quorate.admin.v1); the
peer protocol (quorate.raft.v1) is not for clients.
"""

import filecmp
import os
import shutil
import sys
import tempfile

from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))
OUT = os.path.join(HERE, "src")
FILES = ["quorate/payments/v1/payments.proto", "quorate/admin/v1/admin.proto"]


def generate(into):
    for name in FILES:
        code = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{PROTO}",
                f"--python_out={into}",
                f"--pyi_out={into}",
                f"--grpc_python_out={into}",
                os.path.join(PROTO, name),
            ]
        )
        if code != 0:
            sys.exit(f"protoc failed on {name}")


def generated_files(root):
    found = []
    for directory, _, files in os.walk(os.path.join(root, "quorate")):
        for f in files:
            if f.endswith((".py", ".pyi")):
                found.append(os.path.relpath(os.path.join(directory, f), root))
    return sorted(found)


def main():
    check = "--check" in sys.argv[1:]
    with tempfile.TemporaryDirectory() as scratch:
        generate(scratch)
        fresh = generated_files(scratch)
        if check:
            committed = generated_files(OUT)
            stale = [f for f in fresh if f not in committed]
            stale += [f for f in committed if f not in fresh]
            stale += [
                f
                for f in fresh
                if f in committed
                and not filecmp.cmp(os.path.join(scratch, f), os.path.join(OUT, f), shallow=False)
            ]
            if stale:
                print("stale Python stubs (run clients/python/generate.py):", ", ".join(sorted(set(stale))))
                sys.exit(1)
            print(f"Python stubs are current ({len(fresh)} files)")
            return
        shutil.rmtree(os.path.join(OUT, "quorate"), ignore_errors=True)
        for f in fresh:
            os.makedirs(os.path.dirname(os.path.join(OUT, f)), exist_ok=True)
            shutil.copyfile(os.path.join(scratch, f), os.path.join(OUT, f))
        print(f"wrote {len(fresh)} files under {OUT}/quorate")


if __name__ == "__main__":
    main()
