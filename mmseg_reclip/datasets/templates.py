"""Prompt templates for building CLIP text queries (docs/method.md §2).

The query head of ReCLIP++ encodes every class name with an ensemble of prompt
templates: the 80 ImageNet templates of CLIP (Radford et al., 2021, "Prompt
Engineering for ImageNet" notebook) plus 5 scene templates, 85 in total.
Each template holds exactly one ``{}`` placeholder for the class name.
"""
from string import Formatter
from typing import Dict, List, Optional, Sequence, Union

__all__ = [
    'IMAGENET_TEMPLATES', 'SCENE_TEMPLATES', 'TEMPLATE_SETS', 'get_templates', 'read_template_file'
]

#: The 80 ImageNet prompt templates of CLIP, in the original order.
IMAGENET_TEMPLATES: List[str] = [
    'a bad photo of a {}.',
    'a photo of many {}.',
    'a sculpture of a {}.',
    'a photo of the hard to see {}.',
    'a low resolution photo of the {}.',
    'a rendering of a {}.',
    'graffiti of a {}.',
    'a bad photo of the {}.',
    'a cropped photo of the {}.',
    'a tattoo of a {}.',
    'the embroidered {}.',
    'a photo of a hard to see {}.',
    'a bright photo of a {}.',
    'a photo of a clean {}.',
    'a photo of a dirty {}.',
    'a dark photo of the {}.',
    'a drawing of a {}.',
    'a photo of my {}.',
    'the plastic {}.',
    'a photo of the cool {}.',
    'a close-up photo of a {}.',
    'a black and white photo of the {}.',
    'a painting of the {}.',
    'a painting of a {}.',
    'a pixelated photo of the {}.',
    'a sculpture of the {}.',
    'a bright photo of the {}.',
    'a cropped photo of a {}.',
    'a plastic {}.',
    'a photo of the dirty {}.',
    'a jpeg corrupted photo of a {}.',
    'a blurry photo of the {}.',
    'a photo of the {}.',
    'a good photo of the {}.',
    'a rendering of the {}.',
    'a {} in a video game.',
    'a photo of one {}.',
    'a doodle of a {}.',
    'a close-up photo of the {}.',
    'a photo of a {}.',
    'the origami {}.',
    'the {} in a video game.',
    'a sketch of a {}.',
    'a doodle of the {}.',
    'a origami {}.',
    'a low resolution photo of a {}.',
    'the toy {}.',
    'a rendition of the {}.',
    'a photo of the clean {}.',
    'a photo of a large {}.',
    'a rendition of a {}.',
    'a photo of a nice {}.',
    'a photo of a weird {}.',
    'a blurry photo of a {}.',
    'a cartoon {}.',
    'art of a {}.',
    'a sketch of the {}.',
    'a embroidered {}.',
    'a pixelated photo of a {}.',
    'itap of the {}.',
    'a jpeg corrupted photo of the {}.',
    'a good photo of a {}.',
    'a plushie {}.',
    'a photo of the nice {}.',
    'a photo of the small {}.',
    'a photo of the weird {}.',
    'the cartoon {}.',
    'art of the {}.',
    'a drawing of the {}.',
    'a photo of the large {}.',
    'a black and white photo of a {}.',
    'the plushie {}.',
    'a dark photo of a {}.',
    'itap of a {}.',
    'graffiti of the {}.',
    'a toy {}.',
    'itap of my {}.',
    'a photo of a cool {}.',
    'a photo of a small {}.',
    'a tattoo of the {}.',
]

#: The 5 scene templates added by ReCLIP / ReCLIP++ (docs/method.md §2).
SCENE_TEMPLATES: List[str] = [
    'there is a {} in the scene.',
    'there is the {} in the scene.',
    'this is a {} in the scene.',
    'this is the {} in the scene.',
    'this is one {} in the scene.',
]

#: Named template sets; ``'reclip85'`` is the project default (80 + 5).
TEMPLATE_SETS: Dict[str, List[str]] = {
    'reclip85': IMAGENET_TEMPLATES + SCENE_TEMPLATES,
    'imagenet80': list(IMAGENET_TEMPLATES),
    'scene5': list(SCENE_TEMPLATES),
    'single': ['a photo of a {}.'],
}


def read_template_file(path: str) -> List[str]:
    """Read a prompt-template file: one template per line, each with one ``{}``.

    ``#`` comments and blank lines are ignored (so a template cannot contain ``#``).

    Args:
        path (str): a UTF-8 text file.

    Returns:
        List[str]: the templates, in file order.

    Raises:
        FileNotFoundError: no such file.
        ValueError: no template in the file, or a line without exactly one ``{}``.
    """
    from .class_names import read_numbered_lines
    templates = []
    for number, t in read_numbered_lines(path, 'template'):
        problem = template_problem(t)
        if problem:
            raise ValueError(f'template file {path!r}, line {number}: {problem}')
        templates.append(t)
    return templates


def template_problem(template: str) -> Optional[str]:
    """Why ``template.format(name)`` would not put the class name in once (None: it
    would). Templates are filled with ``str.format``, so every ``{``/``}`` other than
    the one ``{}`` must be doubled."""
    hint = (f"{template!r} must contain exactly one '{{}}' (where the class name goes) and "
            "no other braces, e.g. 'a photo of a {}.'; write a literal brace as '{{' or '}}'")
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in Formatter().parse(template)
                  if name is not None]
    except ValueError as err:  # a single '{' or '}'
        return f'{hint} ({err})'
    if fields != [('', '', None)]:
        return hint
    return None


def get_templates(name_or_list: Union[str, Sequence[str]]) -> List[str]:
    """Resolve a template set.

    Args:
        name_or_list (str | Sequence[str]): a key of :data:`TEMPLATE_SETS`
            (``'reclip85'``, ``'imagenet80'``, ``'scene5'``, ``'single'``), the path
            of a template file (:func:`read_template_file`), or an explicit list of
            templates, each containing exactly one ``'{}'``.

    Returns:
        List[str]: a new list of templates (safe to mutate).

    Raises:
        ValueError: unknown key, empty list, or a template without exactly one
            ``'{}'`` placeholder.
        TypeError: the argument is neither a str nor a sequence of str.
    """
    from .class_names import is_name_file
    if isinstance(name_or_list, str) and name_or_list not in TEMPLATE_SETS \
            and is_name_file(name_or_list):
        name_or_list = read_template_file(name_or_list)
    if isinstance(name_or_list, str):
        if name_or_list not in TEMPLATE_SETS:
            raise ValueError(f'Unknown template set {name_or_list!r}; known keys: '
                             f'{sorted(TEMPLATE_SETS)}')
        templates = list(TEMPLATE_SETS[name_or_list])
    else:
        try:
            templates = list(name_or_list)
        except TypeError:
            raise TypeError('templates must be a str key or a list of str, '
                            f'got {type(name_or_list).__name__}') from None
    if not templates:
        raise ValueError('template list is empty')
    for t in templates:
        if not isinstance(t, str):
            raise TypeError(f'template must be str, got {type(t).__name__}')
        problem = template_problem(t)
        if problem:
            raise ValueError(f'template {problem}')
    return templates
