import os.path as osp
from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

# What `pip install .` asks for: ranges we test, so that installing into an existing
# OpenMMLab environment keeps its torch / mmcv / mmengine. The exact, measured pins of
# `make venv` are in requirements/runtime.txt (docs/install.md).
INSTALL_REQUIRES = [
    'torch>=2.0',
    'mmengine>=0.10,<1',
    'mmsegmentation>=1.2,<1.3',
    'open_clip_torch>=2.20',
    'ftfy',
    'regex',
    'numpy',
]
EXTRAS_REQUIRE = {
    # ConvNeXt student of configs/reclip/reclip-distill_convnext-b-fpn_voc.py
    'mmpretrain': ['mmpretrain>=1.2,<2'],
    # TensorboardVisBackend (configs/_base_/default_runtime.py, vis_backends)
    'tensorboard': ['tensorboard'],
    'tests': ['pytest', 'imgviz'],
}

# Start-up hook: stand-in mmcv.ops with mmcv-lite, whatever the import order
# (_mmseg_reclip_hook.py). Installed next to the packages in site-packages.
HOOK_PTH = 'mmseg_reclip_hook.pth'


class BuildPyWithHook(build_py):
    """build_py that also puts the ``.pth`` start-up hook at the top of the wheel."""

    def run(self):
        super().run()
        self.copy_file(
            osp.join(osp.dirname(osp.abspath(__file__)), HOOK_PTH),
            osp.join(self.build_lib, HOOK_PTH))

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [osp.join(self.build_lib, HOOK_PTH)]


CMDCLASS = {'build_py': BuildPyWithHook}

try:  # editable installs (PEP 660) only map the packages: add the hook to that wheel too
    from setuptools.command.editable_wheel import editable_wheel

    class _StrategyWithHook:
        """Wrap setuptools' editable strategy; also write the ``.pth`` hook."""

        def __init__(self, strategy):
            self.strategy = strategy

        def __call__(self, wheel, files, mapping):
            self.strategy(wheel, files, mapping)
            with open(osp.join(osp.dirname(osp.abspath(__file__)), HOOK_PTH), 'rb') as f:
                wheel.writestr(HOOK_PTH, f.read())

        def __enter__(self):
            self.strategy.__enter__()
            return self

        def __exit__(self, *exc):
            return self.strategy.__exit__(*exc)

    class EditableWheelWithHook(editable_wheel):

        def _select_strategy(self, *args, **kwargs):
            return _StrategyWithHook(super()._select_strategy(*args, **kwargs))

    CMDCLASS['editable_wheel'] = EditableWheelWithHook
except ImportError:  # old setuptools: `import mmseg_reclip` first (docs/install.md)
    pass

setup(
    name='mmseg-reclip',
    version='0.1.0',
    description='ReCLIP++ (unsupervised semantic segmentation by rectifying CLIP) '
    'for MMSegmentation 1.x',
    packages=find_packages(include=['mmseg_reclip', 'mmseg_reclip.*']),
    py_modules=['_mmseg_reclip_hook'],
    package_data={'mmseg_reclip': ['models/utils/model_configs/*.json']},
    python_requires='>=3.8',
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    cmdclass=CMDCLASS,
)
