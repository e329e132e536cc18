"""tools/slurm_train.sh and tools/slurm_test.sh, unchanged, on a real Slurm cluster.

Runs where a test cluster was started (``.ci/run`` does it with
``tools/ci/slurm_cluster.sh start``: a single node on the loopback interface) and its
``env.sh`` sourced, which sets ``RECLIP_TEST_SLURM=1`` and ``SLURM_CONF``. Skipped, with
the reason, everywhere else. Where ``RECLIP_TEST_SLURM=1`` promises a cluster, a
missing or unresponsive one fails the test.
"""
import os
import re
import shutil
import subprocess

import pytest

from tests.test_dist.dist_utils import (assert_params_close, assert_ranks_identical, free_port,
                                        hypothesis_cache, load_states, run_script)
from tests.tool_utils import run_tool

WORLD = 2
PARTITION = os.environ.get('RECLIP_TEST_SLURM_PARTITION', 'debug')


def _skip_reason():
    if os.environ.get('RECLIP_TEST_SLURM') == '1':
        return None
    reason = os.environ.get('RECLIP_TEST_SLURM_SKIP_REASON')
    if reason:
        return f'Slurm test cluster unavailable: {reason}'
    if shutil.which('srun') is None:
        return ('Slurm is not installed (no srun). Start a single-node test cluster with '
                '`tools/ci/slurm_cluster.sh start` (root; installs Slurm with apt-get) and '
                '`source /tmp/reclip-slurm/env.sh`, as .ci/run does')
    return ('RECLIP_TEST_SLURM is not 1: no test cluster was started. Run '
            '`tools/ci/slurm_cluster.sh start` and `source /tmp/reclip-slurm/env.sh`, '
            'as .ci/run does')


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


@pytest.fixture(scope='module')
def slurm_env():
    for tool in ('srun', 'sinfo', 'scontrol'):
        assert shutil.which(tool), f'RECLIP_TEST_SLURM=1 but {tool} is not installed'
    state = subprocess.run(['sinfo', '-h', '-p', PARTITION, '-o', '%T'],
                           capture_output=True,
                           text=True,
                           timeout=60)
    assert state.returncode == 0 and state.stdout.strip(), (
        f'RECLIP_TEST_SLURM=1 but the cluster does not answer (SLURM_CONF='
        f'{os.environ.get("SLURM_CONF")}): {state.stdout} {state.stderr}')
    return dict(
        GPUS=str(WORLD),
        GPUS_PER_NODE=str(WORLD),
        CPUS_PER_TASK='1',
        SRUN_ARGS=os.environ.get('RECLIP_TEST_SLURM_SRUN_ARGS', ''))


@pytest.fixture(scope='module')
def slurm_run(slurm_env, dist_assets, deterministic_config):
    work_dir = dist_assets['root'] / 'wd_det_slurm'
    proc = run_script([
        'tools/slurm_train.sh', PARTITION, 'reclip_test_train', deterministic_config, '--work-dir',
        str(work_dir)
    ],
                      env=dict(slurm_env, MASTER_PORT=str(free_port())))
    return dict(work_dir=work_dir, log=proc.stdout, states=load_states(work_dir, WORLD))


def test_slurm_train_two_tasks(slurm_run, single_process_run):
    """2 Slurm tasks: identical ranks, equal to one process with the global batch, and
    the crop-vote pre-pass split across the tasks."""
    log = slurm_run['log']
    assert 'Distributed launcher: slurm' in log
    assert re.search(r"rank 0 of 2 \(launcher='slurm'\)", log), log[-3000:]
    assert_ranks_identical(slurm_run['states'])
    assert_params_close(slurm_run['states'][0], single_process_run['state'], atol=1e-6)
    assert 'Computing crop_vote hypotheses for 4 images (rank 0: 2)' in log
    assert (hypothesis_cache(slurm_run['work_dir'])['hypotheses'] == hypothesis_cache(
        single_process_run['work_dir'])['hypotheses'])


def test_slurm_test_two_tasks(slurm_env, slurm_run, deterministic_config, tmp_path):
    ckpt = str(slurm_run['work_dir'] / 'iter_4.pth')
    one = run_tool(
        ['tools/test.py', deterministic_config, ckpt, '--work-dir',
         str(tmp_path / 'wd1')])
    two = run_script([
        'tools/slurm_test.sh', PARTITION, 'reclip_test_test', deterministic_config, ckpt,
        '--work-dir',
        str(tmp_path / 'wd2')
    ],
                     env=dict(slurm_env, MASTER_PORT=str(free_port())))
    miou = [
        re.findall(r'mIoU: (\d+\.\d+)', text)[-1:] for text in (one.stdout + one.stderr, two.stdout)
    ]
    assert miou[0] and miou[0] == miou[1]
    assert 'Distributed launcher: slurm' in two.stdout
