"""zoo: one Res2Net model zoo for PyTorch, MindSpore, PaddlePaddle and Jittor.

Importing zoo imports no framework; a framework is imported when a model for it is created.
"""

from __future__ import annotations

from .errors import ZooError
from .spec import Res2NetSpec, get_spec, get_variant, list_variants, resolve_name

__version__ = "0.1.0"
__all__ = ["Res2NetSpec", "ZooError", "create_model", "create_optimizer", "get_spec", "get_variant", "list_models",
           "resolve_name"]


def list_models() -> list[str]:
    """Names of every registered variant (aliases resolve through :func:`resolve_name`)."""
    return [v.name for v in list_variants()]


def create_model(
    name: str | Res2NetSpec,
    framework: str = "torch",
    *,
    weights: str | None = None,
    pretrained: bool = False,
    source: str | None = None,
    revision: str | None = None,
    num_classes: int | None = None,
    features_only: bool = False,
    out_indices=None,
    allow_non_finite: bool = False,
):
    """A native model of ``framework`` for a registered name (or alias) or a custom spec.

    weights: a checkpoint file (official/timm ``.pth``, ``.safetensors``, or the framework's own
        format), loaded strictly: missing, unexpected or mis-shaped tensors raise one error that
        lists them.
    pretrained: download the released weights once (``source``: a tag of ``zoo info``, default the
        variant's default source; ``revision``: a branch, tag or commit of a Hub source), verify
        them, convert them once to this framework, cached under ``$ZOO_HOME`` (Hub files stay in
        huggingface_hub's cache, shared with timm).
    num_classes: a new classifier size; with ``weights`` the checkpoint's classifier is then
        left out (fine-tuning), everything else still loads strictly.
    features_only: return the stage outputs (``out_indices``, default C2..C5) instead of logits.
    """
    from .errors import UsageError
    from .frameworks import get_backend, resolve_framework
    from .frameworks._common import load_weights

    if pretrained and weights is not None:
        raise UsageError("give either weights=PATH or pretrained=True, not both")
    if pretrained and isinstance(name, Res2NetSpec):
        raise UsageError("pretrained weights exist for registered names only; pass weights=PATH")
    if isinstance(name, Res2NetSpec):
        spec, label = name, "custom spec"
    else:
        label = resolve_name(name)
        spec = get_spec(label)
    reset_head = num_classes is not None and num_classes != spec.num_classes
    if num_classes is not None:
        spec = spec.replace(num_classes=num_classes)
    backend = get_backend(framework)
    if pretrained:
        from .pretrained import fetch

        weights = fetch(label, framework, source=source, revision=revision)
    model = backend.build_model(spec, features_only=features_only, out_indices=out_indices)
    if weights is not None:
        load_weights(resolve_framework(framework).name, model, weights, reset_head=reset_head, model_name=label,
                     allow_non_finite=allow_non_finite)
    return model


def create_optimizer(model, framework: str, *, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 1e-4,
                     nesterov: bool = False, decay_norm_and_bias: bool = True):
    """The framework's own SGD-with-momentum optimizer for ``model``, configured to torch's
    semantics (``torch.optim.SGD``: coupled weight decay, no dampening, the first step's buffer
    equal to the gradient): ``torch.optim.SGD``, ``paddle.optimizer.Momentum``,
    ``mindspore.nn.Momentum`` or ``jittor.optim.SGD``. ``decay_norm_and_bias=False`` leaves
    BatchNorm parameters and biases (every 1-d parameter) out of the weight decay. Only trainable
    parameters are given to it. With a model from :func:`create_model`, a training loop in any
    framework then updates the weights as the same loop in torch would (``zoo verify --train``
    checks it)."""
    from .frameworks import get_backend, resolve_framework
    from .training import SGD

    get_backend(framework)  # the error that names the extra, if it is missing
    sgd = SGD(lr, momentum, weight_decay, nesterov, decay_norm_and_bias)
    return resolve_framework(framework).backend("train").create_optimizer(model, sgd)
