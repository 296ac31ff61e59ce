"""The ``Model`` class of the THINGSvision paper (2021, section 2), on visreps's machinery.

A script written for the paper runs with its imports changed to::

    import visreps.vision as vision
    from visreps.model_class import Model

    model = Model("alexnet", pretrained=True, device="cpu", backend="pt")
    module_name = model.show()                          # prints the architecture, asks on stdin
    dl = vision.load_dl(root="./images/", out_path="./alexnet/features.10/features",
                        batch_size=64, transforms=model.get_transformations(), backend="pt")
    features, targets = model.extract_features(data_loader=dl, module_name="features.10",
                                               batch_size=64, flatten_acts=True, device="cpu")
    vision.save_features(features, "./alexnet/features.10/features", "npy")

Deprecated: the modern API is ``lm = visreps.load_model("torchvision:alexnet")``,
``lm.print_layers()`` and ``visreps.extract(lm, images, layers=[...])`` (README section "Coming
from THINGSvision").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import VisrepsError
from . import deprecated
from ._core import architecture, extract_features, is_clip, model_id, show_model

__all__ = ["Model"]


class Model:
    """A network loaded by its THINGSvision name (see :func:`visreps.vision.model_id`).

    The object prints as the network's architecture, and attribute access it does not define
    itself (``model.features``, ``model.named_modules()``, ``model.eval()``) goes to the network,
    so scripts that used the original's ``model.model`` or treated the model as a
    ``torch.nn.Module`` keep working.

    Args:
        model_name: ``alexnet``, ``vgg16_bn``, ``resnet50`` (any torchvision name), ``cornet-s``,
            ``cornet-z``, ``cornet-r``, ``cornet-rt``, ``clip-ViT``, ``clip-RN``; with
            ``backend='tf'`` a ``keras.applications`` class name (``VGG16``, ``ResNet50``).
        pretrained: ImageNet (CLIP: OpenAI) weights; ``False``: random initialisation, seeded with
            0 (the same numbers every run).
        device: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` (``auto``: the best available).
        model_path: a weights file to load instead of the published weights (a state_dict; for
            Keras a ``.weights.h5``/``.h5``/``.keras`` file).
        backend: ``pt`` (PyTorch) or ``tf`` (TensorFlow/Keras, through
            :mod:`visreps.models.keras`; needs ``pip install 'visreps[keras]'``).

    Attributes:
        lm: the :class:`visreps.models.LoadedModel` doing the work.
        model: the network itself (``torch.nn.Module`` or ``keras.Model``).
        model_id: the visreps model id (``torchvision:alexnet``).
    """

    @deprecated(new="visreps.load_model(...) and visreps.extract(...)", name="visreps.model_class.Model")
    def __init__(
        self, model_name: str, pretrained: bool, device: str = "cpu", model_path: str | None = None, backend: str = "pt"
    ) -> None:
        from ..models import load_model

        if not isinstance(pretrained, (bool, np.bool_)):
            raise VisrepsError(f"pretrained must be True or False, got {pretrained!r}")
        self.model_name = model_name
        self.pretrained = pretrained = bool(pretrained)
        self.device = device
        self.model_path = model_path
        self.backend = backend
        self.model_id = model_id(model_name, backend)
        self.lm = load_model(
            self.model_id, pretrained=pretrained and model_path is None, weights=model_path, device=device
        )
        self.model = self.lm.module

    # -- the network's face

    def __getattr__(self, name: str) -> Any:
        # only called for attributes the object does not have; never during construction
        if name.startswith("__") or "model" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["model"], name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def __repr__(self) -> str:
        return architecture(self.lm, self.model_name)

    # -- the paper's methods

    def show(self) -> str:
        """Print the architecture and ask on stdin which module to extract; returns its name.

        An invalid answer is refused with the closest valid names and asked again (works with
        piped stdin). See :func:`visreps.vision.show_model`.
        """
        return show_model(self, self.model_name)

    def get_transformations(self, resize_dim: int = 256, crop_dim: int = 224) -> Callable:
        """The image transform for :func:`visreps.vision.load_dl`.

        With the defaults: the model's own preprocessing (``self.lm.transform``): for torchvision
        and CORnet models resize 256, centre crop 224, ImageNet mean/std (pretrained torchvision
        weights use their published preprocessing); CLIP's resize 224 (bicubic), crop and OpenAI
        normalisation; Keras: the application's input size. Other ``resize_dim``/``crop_dim``
        give resize ``resize_dim`` → centre crop ``crop_dim`` with the model's normalisation and
        interpolation (ignored for CLIP and Keras models, whose input size is fixed, as in the
        original).
        """
        lm = self.lm
        if (resize_dim, crop_dim) == (256, 224) or is_clip(lm) or lm.backend != "torch":
            return lm.transform
        prep = lm.preprocessing
        from ..models import Preprocessing

        custom = Preprocessing(
            resize=resize_dim, crop=crop_dim, mean=prep.mean, std=prep.std, interpolation=prep.interpolation
        )
        if custom == prep:
            return lm.transform
        transform = custom.build()
        transform.visreps_preprocessing = custom  # tells extraction the input size
        return transform

    def extract_features(
        self,
        data_loader: Any,
        module_name: str,
        batch_size: int,
        flatten_acts: bool,
        device: str | None = None,
        return_probabilities: bool = False,
        clip: bool | None = None,
    ) -> tuple[np.ndarray, ...]:
        """Activations of ``module_name`` for every image of ``data_loader``.

        Returns ``(features, targets)``, or ``(features, targets, probabilities)`` with
        ``return_probabilities``; see :func:`visreps.vision.extract_features` for the details.
        ``clip`` is accepted for old scripts and not needed (visreps knows a CLIP model).
        """
        return extract_features(
            self,
            data_loader,
            module_name,
            batch_size,
            flatten_acts,
            device,
            bool(clip) if clip is not None else is_clip(self.lm),
            return_probabilities,
        )
