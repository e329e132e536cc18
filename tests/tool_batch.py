"""Run several ``tools/train.py`` / ``tools/test.py`` invocations in one Python process.

Helper of ``tests/test_tools/test_experiment_configs.py``: each job is the real tool's
``main(argv)``, but the interpreter and the imports (about 5 s of CPU per run) are paid
once instead of once per config. Usage::

    python tests/tool_batch.py JOBS.json RESULTS.json

``JOBS.json``: ``[{"key": ..., "tool": "train" | "test", "argv": [...]}, ...]``, run in
order (a job may use the checkpoint of an earlier one). ``RESULTS.json`` (rewritten
after every job): ``{key: "ok" | traceback}``. Each run's log is in its work dir.
"""
import importlib.util
import json
import os.path as osp
import sys
import traceback

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f'_tool_{name}',
                                                  osp.join(REPO_ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(jobs_file: str, results_file: str) -> None:
    with open(jobs_file) as f:
        jobs = json.load(f)
    tools = {name: load_tool(name) for name in {job['tool'] for job in jobs}}
    results = {}
    for job in jobs:
        print(f'=== {job["key"]}: tools/{job["tool"]}.py {" ".join(job["argv"])}', flush=True)
        try:
            tools[job['tool']].main(job['argv'])
            results[job['key']] = 'ok'
        except BaseException:  # SystemExit of argparse too: record it, run the next job
            results[job['key']] = traceback.format_exc()
            print(results[job['key']], flush=True)
        with open(results_file, 'w') as f:
            json.dump(results, f)


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
