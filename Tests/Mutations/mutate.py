#!/usr/bin/env python3
"""The project's mutation check: plants each mutation of `mutations.json` (a small, plausible
bug) in a scratch clone of the repository, one at a time, builds, runs the test suites that
should catch it, and prints which survived. Not run by CI: run it before a release or after a
large change, and add a mutation for each new kernel or documented behaviour.

    python3 Tests/Mutations/mutate.py [--only WORD] [--scratch DIR] [--timeout SECONDS]

The scratch clone (default /tmp/bigslice-mutants) is made once with a debug build, and brought
to the repository's HEAD on every run, so later runs rebuild only what a mutation touches.
A mutation is caught when its suites fail (an expectation, a crash or a timeout); it is
refused when its text is not found exactly once, or when the mutant does not build. Exit
status 1 when any survived or was refused."""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def run(command, cwd, timeout=None):
    """(exit status, combined output); status None when it timed out."""
    try:
        done = subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout, text=True, errors="replace")
        return done.returncode, done.stdout
    except subprocess.TimeoutExpired as expired:
        return None, expired.stdout or ""


def prepare(scratch):
    if not os.path.isdir(os.path.join(scratch, ".git")):
        status, out = run(["git", "clone", "--quiet", ROOT, scratch], cwd="/")
        if status != 0:
            sys.exit(f"cannot clone {ROOT} into {scratch}:\n{out}")
    head = run(["git", "rev-parse", "HEAD"], cwd=ROOT)[1].strip()
    for command in (["git", "fetch", "--quiet", ROOT, head], ["git", "reset", "--quiet", "--hard", head]):
        status, out = run(command, cwd=scratch)
        if status != 0:
            sys.exit(f"{' '.join(command)} failed in {scratch}:\n{out}")
    print(f"scratch clone {scratch} at {head[:12]}; building it unmutated", flush=True)
    status, out = run(["swift", "build", "--build-tests"], cwd=scratch)
    if status != 0:
        sys.exit(f"the unmutated build fails:\n{out[-3000:]}")


def check(mutation, scratch, timeout):
    path = os.path.join(scratch, mutation["file"])
    with open(path) as f:
        original = f.read()
    found = original.count(mutation["find"])
    if found != 1:
        return "refused", f"its text is found {found} times in {mutation['file']}"
    try:
        with open(path, "w") as f:
            f.write(original.replace(mutation["find"], mutation["replace"]))
        status, out = run(["swift", "build", "--build-tests"], cwd=scratch)
        if status != 0:
            return "refused", "the mutant does not build"
        started = time.monotonic()
        status, out = run(["swift", "test", "--skip-build", "--filter", mutation["tests"]], cwd=scratch,
                          timeout=timeout)
        seconds = time.monotonic() - started
        if status is None:
            return "caught", f"{mutation['tests']} timed out after {seconds:.0f} s"
        if status != 0:
            failed = [line for line in out.splitlines() if line.startswith("✘ Test ")]
            what = failed[0][:160] if failed else f"exit status {status} (a crash)"
            return "caught", f"in {seconds:.0f} s: {what}"
        if "Test run with 0 tests" in out:
            return "refused", f"the filter {mutation['tests']} runs no test"
        return "SURVIVED", f"{mutation['tests']} passed in {seconds:.0f} s"
    finally:
        with open(path, "w") as f:
            f.write(original)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="only mutations whose name contains this (or one of these, separated by |)")
    parser.add_argument("--scratch", default="/tmp/bigslice-mutants")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a mutant's suites may take")
    args = parser.parse_args()
    with open(os.path.join(HERE, "mutations.json")) as f:
        mutations = json.load(f)
    if args.only:
        mutations = [m for m in mutations if any(word in m["name"] for word in args.only.split("|"))]
    prepare(args.scratch)
    results = []
    for mutation in mutations:
        verdict, detail = check(mutation, args.scratch, args.timeout)
        results.append(verdict)
        print(f"{verdict:9} {mutation['name']}: {detail}", flush=True)
    survived = results.count("SURVIVED")
    refused = results.count("refused")
    print(f"{len(results)} mutations: {results.count('caught')} caught, {survived} survived, {refused} refused")
    # Rebuild unmutated, so the scratch clone is ready for the next run.
    run(["swift", "build", "--build-tests"], cwd=args.scratch)
    sys.exit(1 if survived or refused else 0)


if __name__ == "__main__":
    main()
