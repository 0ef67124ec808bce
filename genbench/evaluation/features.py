"""Linear-SVM probe of encoder features: the L2-SVM protocol of Dumoulin 2018 §5.4.3 (Table 5.1: ALI 19.14 ± 0.50 on SVHN).

Protocol (the thesis' text and the ALI code, ``scripts/preprocess_representations`` and
``experiments/semi_supervised_svhn.py``):

* features: the model's ``features(x)``, for ALI the pre-activations (batch-norm outputs) of the
  encoder's last three hidden layers and its output mean μ, concatenated (5,376 dimensions for
  Table 5.4's encoder; the thesis prints 8,960, which its architecture does not give);
* a held-out validation set of 10,000 training examples for model selection (the data module's
  ``val`` split when it has one, else the last ``validation`` training examples);
* C of scikit-learn's ``LinearSVC`` (squared hinge: an L2-SVM) chosen on a log grid e^[−20, 20]
  (50 values) by the validation error of an SVM fitted to one labelled set;
* ``repeats`` = 100 SVMs, each on a fresh random set of ``labelled`` = 1,000 training examples drawn
  from the first ``pool`` training examples (SVHN: the 63,257 official training images left after the
  validation split), class-balanced (100 per class) when ``balanced``; the test error of each on the
  whole test split; reported as mean, with the standard deviation over SVMs in ``settings``.

Features are not standardized (as in the code). Everything is seeded by ``seed``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.svm import LinearSVC

from ..core.devices import module_device
from .records import Result

REFERENCE = "Dumoulin 2018 §5.4.3 (Table 5.1, L2-SVM on ALI features); ALI code semi_supervised_svhn.py"


def extract(model, x: torch.Tensor, batch_size: int = 500) -> np.ndarray:
    """``model.features`` of ``x`` in eval mode, as a float64 array [N, F]."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = module_device(model)
            out = torch.cat([model.features(part.float().to(device)).cpu() for part in x.split(batch_size)])
    finally:
        model.train(was_training)
    return out.double().numpy()


def draw_labelled(y: np.ndarray, n: int, balanced: bool, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` labelled examples: ``n / classes`` per class when ``balanced``, else uniformly at random."""
    if not balanced:
        return rng.choice(len(y), n, replace=False)
    classes = np.unique(y)
    per = n // len(classes)
    return np.concatenate([rng.choice(np.flatnonzero(y == c), per, replace=False) for c in classes])


def svm_error(model, datamodule, split: str = "test", labelled: int = 1000, validation: int = 10_000,
              pool: int | None = None, repeats: int = 100, balanced: bool = True, log_c: tuple = (-20.0, 20.0, 50),
              max_iter: int = 10_000, seed: int = 0) -> list[Result]:
    """``error_pct``: the mean test error (%) of ``repeats`` linear SVMs on ``labelled`` examples' features."""
    train_x, train_y = datamodule.split("train"), datamodule.labels("train")
    if "val" in datamodule.splits:
        val_x, val_y = datamodule.split("val"), datamodule.labels("val")
    else:
        train_x, val_x = train_x[:-validation], train_x[-validation:]
        train_y, val_y = train_y[:-validation], train_y[-validation:]
    if pool is not None:
        train_x, train_y = train_x[:pool], train_y[:pool]
    test_x, test_y = datamodule.split(split), datamodule.labels(split)
    f_train, f_val, f_test = (extract(model, t.float()) for t in (train_x, val_x, test_x))
    y_train, y_val, y_test = (t.numpy() for t in (train_y, val_y, test_y))
    rng = np.random.default_rng(seed)

    def fit(c, idx):
        return LinearSVC(C=c, max_iter=max_iter, random_state=seed).fit(f_train[idx], y_train[idx])

    idx = draw_labelled(y_train, labelled, balanced, rng)
    grid = np.exp(np.linspace(*log_c))
    val_errors = [1 - fit(c, idx).score(f_val, y_val) for c in grid]
    best_c = float(grid[int(np.argmin(val_errors))])
    errors = np.array([100 * (1 - fit(best_c, draw_labelled(y_train, labelled, balanced, rng)).score(f_test, y_test))
                       for _ in range(repeats)])
    std = float(errors.std(ddof=1)) if repeats > 1 else math.nan
    return [Result("error_pct", float(errors.mean()), "%", "estimate", std_error=std / math.sqrt(repeats), n=repeats,
                   settings={"protocol": "L2-SVM on encoder features", "reference": REFERENCE, "labelled": labelled,
                             "balanced": balanced, "repeats": repeats, "std_over_svms": std, "C": best_c,
                             "best_validation_error_pct": 100 * float(min(val_errors)), "n_validation": len(y_val),
                             "n_pool": len(y_train), "n_test": len(y_test), "feature_dim": f_train.shape[1],
                             "seed": seed})]
