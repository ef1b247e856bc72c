"""Make ``src/probloss/data/digits.npz``, the data set that ``probloss score --demo`` scores.

Run once (needs scikit-learn; the demo itself does not):
``python scripts/make_demo_data.py``. It trains a logistic regression on half of
scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes; the UCI
optical recognition of handwritten digits test set) and stores, for the other half,
the true labels (``y_true``, int64), the predicted class probabilities (``y_pred``,
float32, shape (n, 10)) and the logits (``logits``). Deterministic (fixed split and
solver), so rerunning gives the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

OUT = Path(__file__).resolve().parent.parent / "src" / "probloss" / "data" / "digits.npz"


def main() -> None:
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.5, random_state=0,
                                                        stratify=y)
    model = LogisticRegression(C=0.05, max_iter=2000).fit(x_train, y_train)
    logits = model.decision_function(x_test).astype(np.float32)
    probabilities = model.predict_proba(x_test).astype(np.float32)
    description = (f"scikit-learn's handwritten digits (UCI), the {len(y_test)} held-out images of a "
                   "50/50 stratified split; predictions of a logistic regression (C=0.05) trained "
                   "on the other half")
    np.savez_compressed(OUT, y_true=y_test.astype(np.int64), y_pred=probabilities, logits=logits,
                        description=np.array(description))
    accuracy = float(np.mean(np.argmax(probabilities, axis=1) == y_test))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes); accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
