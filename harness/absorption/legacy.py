"""The calls harness/engine.py makes today (`AbsorptionCache`), as thin wrappers over
`AbsorptionEval`, so the engine keeps working until it is changed to use `AbsorptionEval`
directly. Delete this module then."""

from __future__ import annotations

from dataclasses import dataclass

from harness.absorption.evaluation import AbsorptionEval
from suite.jobs import AbsorptionSettings


@dataclass
class WordActivations:
    evaluation: AbsorptionEval

    @property
    def words(self) -> list[str]:
        ev = self.evaluation
        return [w.text for w in ev._train.words + ev._test.words] if ev._train is not None else []

    @property
    def dropped(self) -> int:
        return len(self.evaluation.dropped)


GroundTruth = int  # the layer


def collect_word_activations(lm, layers: list[int], settings: AbsorptionSettings, progress=None) -> WordActivations:
    evaluation = AbsorptionEval(lm, layers, settings, progress)
    evaluation.prepare()
    return WordActivations(evaluation)


def ground_truth_probe(words: WordActivations, layer: int, settings: AbsorptionSettings) -> GroundTruth:
    return layer


def absorption_metrics(sae, words: WordActivations, truth: GroundTruth, layer: int,
                       settings: AbsorptionSettings) -> tuple[dict[str, float], str | None]:
    outcome = words.evaluation.score(sae, layer)
    return outcome.metrics, outcome.reason
