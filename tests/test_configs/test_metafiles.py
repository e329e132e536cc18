"""The config folders' metafiles (as mmseg's): every entry names a config that exists,
and every shipped config of a dataset is listed (the ``*_custom.py`` configs, for your
own images, have no dataset and no result)."""
import glob
import os.path as osp

import yaml

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _entries():
    for path in glob.glob(osp.join(ROOT, 'configs', '**', 'metafile.yaml'), recursive=True):
        with open(path) as f:
            for model in yaml.safe_load(f)['Models']:
                yield path, model


def test_every_metafile_entry_names_an_existing_config():
    entries = list(_entries())
    assert entries
    for path, model in entries:
        assert osp.isfile(osp.join(ROOT, model['Config'])), (path, model['Name'])
        assert model['Name'] == osp.basename(model['Config'])[:-3], (path, model['Name'])


def test_every_dataset_config_is_in_a_metafile():
    listed = {model['Config'] for _, model in _entries()}
    leaves = [
        osp.relpath(p, ROOT)
        for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
        if '_base_' not in p and not p.endswith('_custom.py')
    ]
    assert sorted(p for p in leaves if p not in listed) == []
