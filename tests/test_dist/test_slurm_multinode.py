"""tools/slurm_train.sh, unchanged, across two Slurm nodes: one task per node, gloo
over the nodes' addresses, and the same weights as the single-node 2-process run.

Runs where ``tools/ci/slurm_multinode.sh start`` (``.ci/run`` does it as root) started
two Slurm nodes on this machine, each a network namespace with its own address and host
name on a private bridge, and its ``env.sh`` was sourced (``RECLIP_TEST_SLURM_MULTINODE=1``
and the cluster's ``slurm.conf``). Skipped, with the reason, everywhere else. Where
``RECLIP_TEST_SLURM_MULTINODE=1`` promises the cluster, a missing or unresponsive one
fails the test.
"""
import json
import os
import re
import shutil
import subprocess
from typing import Dict

import pytest

from tests.test_dist.dist_utils import (assert_ranks_identical, assert_states_equal, free_port,
                                        hypothesis_cache, load_states, run_script, write_config)

WORLD = 2
PARTITION = os.environ.get('RECLIP_TEST_SLURM_MULTINODE_PARTITION', 'multinode')
CONF = os.environ.get('RECLIP_TEST_SLURM_MULTINODE_CONF', '')
ITERS = 4


def _skip_reason():
    if os.environ.get('RECLIP_TEST_SLURM_MULTINODE') == '1':
        return None
    reason = os.environ.get('RECLIP_TEST_SLURM_MULTINODE_SKIP_REASON')
    if reason:
        return f'two-node Slurm test cluster unavailable: {reason}'
    return ('RECLIP_TEST_SLURM_MULTINODE is not 1: no two-node test cluster was started. '
            'Run `tools/ci/slurm_multinode.sh start` (root: network namespaces, installs '
            'Slurm with apt-get) and `source /tmp/reclip-slurm/multinode/env.sh`, as '
            '.ci/run does')


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


@pytest.fixture(scope='module')
def nodes() -> Dict[str, str]:
    """``{node name: NodeAddr}`` of the two idle nodes of the cluster."""
    for tool in ('srun', 'scontrol'):
        assert shutil.which(tool), f'RECLIP_TEST_SLURM_MULTINODE=1 but {tool} is not installed'
    assert CONF and os.path.isfile(CONF), (
        f'RECLIP_TEST_SLURM_MULTINODE=1 but RECLIP_TEST_SLURM_MULTINODE_CONF={CONF!r} is '
        'not a file')
    out = subprocess.run(['scontrol', 'show', 'node', '-o'],
                         capture_output=True,
                         text=True,
                         timeout=60,
                         env=dict(os.environ, SLURM_CONF=CONF))
    assert out.returncode == 0, f'the two-node cluster does not answer: {out.stderr}'
    found = {}
    for line in out.stdout.splitlines():
        fields = dict(re.findall(r'(\w+)=(\S*)', line))
        assert fields['State'].startswith('IDLE'), f'node not idle: {line}'
        found[fields['NodeName']] = fields['NodeAddr']
    assert len(found) == WORLD, f'expected {WORLD} nodes, got {out.stdout}'
    return found


@pytest.fixture(scope='module')
def multinode_run(nodes, dist_assets):
    """slurm_train.sh with GPUS=2 GPUS_PER_NODE=1: the deterministic config (2 ranks x
    batch 2), plus a hook that records where each rank ran."""
    root = dist_assets['root']
    cfg = write_config(
        root / 'det_2x2_nodes.py',
        dist_assets['clip'],
        dist_assets['data'],
        kind='deterministic',
        batch_size=2,
        max_iters=ITERS,
        extra_hooks=["dict(type='NodeInfoHook')"])
    work_dir = root / 'wd_det_slurm_2nodes'
    proc = run_script(
        ['tools/slurm_train.sh', PARTITION, 'reclip_test_2nodes', cfg, '--work-dir',
         str(work_dir)],
        env=dict(
            SLURM_CONF=CONF,
            GPUS=str(WORLD),
            GPUS_PER_NODE='1',
            CPUS_PER_TASK='1',
            SRUN_ARGS=os.environ.get('RECLIP_TEST_SLURM_MULTINODE_SRUN_ARGS', ''),
            MASTER_PORT=str(free_port())))
    info = []
    for rank in range(WORLD):
        with open(work_dir / f'node_info_rank{rank}.json') as f:
            info.append(json.load(f))
    return dict(work_dir=work_dir, log=proc.stdout, states=load_states(work_dir, WORLD), info=info)


def test_one_task_per_node(multinode_run, nodes):
    """Each rank runs on its own node: its own host name, network namespace and
    address; MASTER_ADDR is the first node's name and resolves to its address."""
    info = multinode_run['info']
    log = multinode_run['log']
    assert 'Distributed launcher: slurm' in log
    assert re.search(r"rank 0 of 2 \(launcher='slurm'\)", log), log[-3000:]
    first = sorted(nodes)[0]  # scontrol show hostname lists the nodes in order
    for rank, rec in enumerate(info):
        assert rec['rank'] == rank and rec['slurm_procid'] == str(rank)
        assert rec['slurm_nodeid'] == str(rank)
        assert rec['hostname'] == rec['slurm_nodename'], rec
        assert rec['host_ip'] == nodes[rec['hostname']], rec
        assert rec['master_addr'] == first and rec['master_ip'] == nodes[first], rec
    assert {rec['hostname'] for rec in info} == set(nodes)
    namespaces = {rec['netns'] for rec in info}
    assert len(namespaces) == WORLD, f'the ranks share a network namespace: {namespaces}'
    assert os.readlink('/proc/self/ns/net') not in namespaces


def test_gloo_goes_over_the_node_addresses(multinode_run, nodes):
    """Each rank holds TCP connections from its node's address to the other node's, and
    its node's interface (loopback excluded) carried the gradient all-reduces.

    The namespaces share nothing but the bridge, so a rank that bound or advertised a
    loopback address could not have been reached by the other.
    """
    info = multinode_run['info']
    for rank, rec in enumerate(info):
        own, peer = rec['host_ip'], info[1 - rank]['host_ip']
        pairs = [(local, remote) for local, remote in rec['tcp']
                 if local.rsplit(':', 1)[0] == own and remote.rsplit(':', 1)[0] == peer]
        assert pairs, f'rank {rank} has no TCP connection {own} -> {peer}: {rec["tcp"]}'
        sent = sum(
            after.get('tx_bytes', 0) - rec['bytes_before'][name].get('tx_bytes', 0)
            for name, after in rec['bytes_after'].items()
            if name != 'lo' and name in rec['bytes_before'])
        # Every iteration each rank ends with the sum of both ranks' gradients, so it
        # must receive (and its peer send) at least a full gradient's bytes.
        need = ITERS * rec['trainable_bytes']
        assert sent >= need, (f'rank {rank} sent {sent} bytes over its node interface, '
                              f'fewer than {ITERS} gradient all-reduces ({need})')
        print(f'rank {rank} ({rec["hostname"]}, {own}): {len(pairs)} connections to '
              f'{peer}, {sent} bytes sent ({rec["trainable_bytes"]} gradient bytes/iter)')


def test_two_nodes_equal_one_node(multinode_run, deterministic_run):
    """The 2-node run ends bit-identical (parameters and buffers, every rank) to the
    single-node 2-process run (dist_train.sh), with the same crop-vote cache."""
    assert_ranks_identical(multinode_run['states'])
    for rank in range(WORLD):
        two_nodes, one_node = multinode_run['states'][rank], deterministic_run['states'][rank]
        assert two_nodes['iter'] == one_node['iter'] == ITERS
        assert_states_equal(two_nodes, one_node)
    assert (hypothesis_cache(multinode_run['work_dir'])['hypotheses'] == hypothesis_cache(
        deterministic_run['work_dir'])['hypotheses'])
    assert 'Computing crop_vote hypotheses for 4 images (rank 0: 2)' in multinode_run['log']
