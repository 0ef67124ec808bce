"""Name → class lookups for data modules and models, with errors that list the valid names.

Entries are ``"module:Class"`` strings so that importing genbench stays cheap
and a family's module loads only when used. A user's own class is named the
same way (``my_pkg.my_module:MyModel`` or ``path/to/file.py:MyModel``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from .errors import UnknownNameError, closest

MODELS = {
    "true_mixture": "genbench.models.baselines:TrueMixture",
    "independent_bernoulli": "genbench.models.baselines:IndependentBernoulli",
    "mixture_of_bernoullis": "genbench.models.baselines:MixtureOfBernoullis",
    "rbm": "genbench.models.rbm:RBM",
    "gan": "genbench.models.gan:GAN",
    "ali": "genbench.models.ali:ALI",
    "bigan": "genbench.models.ali:BiGAN",
    "ssl_gan": "genbench.models.semi_supervised:SemiSupervisedGAN",
    "ali_ssl": "genbench.models.semi_supervised:SemiSupervisedALI",
    "gan_inverse_mapping": "genbench.models.gan_inference:GANInverseMapping",
    "gan_posthoc": "genbench.models.gan_inference:GANPostHoc",
    "nice": "genbench.models.flows:NICE",
    "realnvp": "genbench.models.flows:RealNVP",
    "zuko": "genbench.models.zuko_flows:ZukoFlow",
    "vae": "genbench.models.vae:VAE",
    "nade": "genbench.models.autoregressive:NADE",
    "made": "genbench.models.autoregressive:MADE",
    "pixelcnn": "genbench.models.autoregressive:PixelCNN",
}

DATA_MODULES = {
    "gmm2d": "genbench.data.gmm2d:GMM2DDataModule",
    "two_moons": "genbench.data.toy2d:TwoMoonsDataModule",
    "digits": "genbench.data.digits:DigitsDataModule",
    "mnist": "genbench.data.mnist:MNISTDataModule",
    "cifar10": "genbench.data.images:CIFAR10DataModule",
    "svhn": "genbench.data.images:SVHNDataModule",
}


def import_object(target: str):
    """Import ``module:attr`` or ``path/to/file.py:attr``."""
    module_name, sep, attr = target.partition(":")
    if not sep or not attr:
        raise UnknownNameError(f"{target!r} is not of the form 'module:Class' or 'file.py:Class'")
    if module_name.endswith(".py"):
        path = Path(module_name).resolve()
        if not path.is_file():
            raise UnknownNameError(f"{target!r}: the file {path} does not exist")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
    else:
        if "" not in sys.path and "." not in sys.path:
            sys.path.insert(0, "")  # a user's module in the current directory
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            raise UnknownNameError(f"{target!r}: cannot import module {module_name!r} ({e})") from e
    try:
        return getattr(module, attr)
    except AttributeError as e:
        raise UnknownNameError(f"{target!r}: module {module_name!r} has no {attr!r}") from e


def resolve(kind: str, table: dict[str, str], name: str):
    """The class registered as ``name`` in ``table``, or a user's ``module:Class``."""
    if name in table:
        return import_object(table[name])
    if ":" in name:
        return import_object(name)
    raise UnknownNameError(f"unknown {kind} {name!r}{closest(name, table)}; valid: {', '.join(sorted(table))} (or a "
                           f"'module:Class' of your own)")
