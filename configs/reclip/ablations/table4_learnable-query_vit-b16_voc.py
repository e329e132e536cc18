# Table IV, learnable Query: the Query prompt is [SOS] + M learnable context vectors
# (shared by all classes, CoOp style) + name + [EOT] instead of the fixed 85-template
# ensemble (docs/method.md §11.4). Trainable: the Query context, plus ReCLIP++'s usual parts.
# M and its init are not given by the paper: the Reference's (73, token 0).
_base_ = ['../reclip_vit-b16_voc.py']
model = dict(
    decode_head=dict(
        type='LearnableQueryReCLIPHead', query_num_context=73, query_ctx_init='token0'))
