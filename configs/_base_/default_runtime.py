default_scope = 'mmseg'
custom_imports = dict(imports=['mmseg_reclip'], allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
# Logs and images under the work dir. For TensorBoard (`tensorboard` is in the pinned
# requirements, or `pip install "mmseg-reclip[tensorboard]"`), in your config:
#   visualizer = dict(vis_backends=[dict(type='LocalVisBackend'),
#                                   dict(type='TensorboardVisBackend')])
# then `tensorboard --logdir work_dirs/<config>/<timestamp>/vis_data`.
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
tta_model = dict(type='SegTTAModel')
# Work-dir lock, start-up cleanup of interrupted writes, resume past a truncated latest
# checkpoint (mmseg_reclip/engine/runner; works with mmseg's stock tools/train.py).
runner_type = 'ReCLIPRunner'
