"""The joints: no import cycle, one seed scheme, a settled run context, registries that make a new plan
mode or sweep one function plus one registration, one definition of a trial's drug."""

import ast
import random
from pathlib import Path

import pytest
from synthtrials.evals.experiment import Evaluation
from synthtrials.graphs.config import GenerationConfig
from synthtrials.graphs.context import RunContext
from synthtrials.graphs.plan import PLAN_MODES, SamplingPlan
from synthtrials.tools.errors import ConfigError
from synthtrials.tools.records.eligibility import EligibleIntervention, first_drug, trial_drugs
from synthtrials.tools.records.trial import Intervention, InterventionType, Trial
from synthtrials.tools.seeds import llm_seed, stream

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agents", "graphs", "tools", "evals", "scripts")


def module_imports() -> dict[str, set[str]]:
    """Every synthtrials module and the synthtrials modules it imports anywhere (lazy and TYPE_CHECKING too)."""
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = "synthtrials." + ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_no_module_imports_itself_through_others():
    graph = module_imports()
    assert len(graph) > 60
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for nxt in sorted(graph[module]):
            if state.get(nxt) == 1:
                return path + [module, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [module])):
                return cycle
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            assert visit(module, []) is None, "import cycle"


def test_streams_are_named_reproducible_and_independent():
    assert stream(3, "plan", 5).random() == stream(3, "plan", 5).random()
    assert stream(3, "plan", 5).random() != stream(3, "examples", 5).random()
    assert stream(3, "plan", 5).random() == random.Random("3:plan:5").random()  # runs before the scheme keep their plan
    seeds = {llm_seed(0, node, index, revision) for node in ("reasoner", "writer", "critic")
             for index in range(20) for revision in range(3)}
    assert len(seeds) == 180 and all(0 <= s < 2 ** 31 for s in seeds)
    assert llm_seed(1, "writer", 0) != llm_seed(0, "writer", 0)


def test_the_run_context_holds_only_a_settled_configuration():
    with pytest.raises(ValueError, match="not settled .*ground_on.*settle_generation"):
        RunContext(generation=GenerationConfig())
    assert GenerationConfig(reasoner="evidence").unsettled() == ["ground_on", "draft", "llm_critic", "thresholds"]


DRUGS = [EligibleIntervention(intervention=name, successes=s, failures=f)
         for name, s, f in (("aspirin", 9, 1), ("placebo", 5, 5), ("metformin", 1, 9))]


def test_plan_modes_are_registered_once():
    assert set(PLAN_MODES) == {"anchored", "contrastive", "proportional", "list"}
    for mode in ("contrastive", "proportional"):
        plan = SamplingPlan.create("r", 0, DRUGS, mode)
        assert {e.intervention for e in plan.interventions} == {"aspirin", "metformin"}  # no placebo target
        targets = [plan.target(i) for i in range(200)]
        assert sum(t.label for t in targets) == 100  # balanced pair by pair
    proportional = SamplingPlan.create("r", 0, DRUGS, "proportional")
    successes = [t.intervention for t in map(proportional.target, range(400)) if t.label == 1]
    assert successes.count("aspirin") > 3 * successes.count("metformin")
    listed = SamplingPlan.create("r", 0, DRUGS, "list", ["Metformin 500 mg"])
    assert {listed.target(i).intervention for i in range(10)} == {"metformin"}
    with pytest.raises(ConfigError, match="unknown plan mode 'anchoredx' \\(anchored, contrastive, proportional, list\\)"):
        SamplingPlan.create("r", 0, DRUGS, "anchoredx")


def test_sweeps_are_the_evaluation_s_sweep_methods():
    assert Evaluation.names_of_sweeps() == ["ratio", "low_resource", "generalisation", "fidelity"]


def test_a_trial_s_drug_is_its_first_drug_typed_intervention():
    trial = Trial(nct_id="NCT00000001", source="real", interventions=[
        Intervention(name="Exercise", type=InterventionType.BEHAVIORAL),
        Intervention(name="Metformin 500 mg", type=InterventionType.DRUG),
        Intervention(name="Insulin", type=InterventionType.BIOLOGICAL)])
    assert trial_drugs(trial) == ["metformin", "insulin"] and first_drug(trial) == "metformin"
    assert first_drug(Trial(nct_id="NCT00000002", source="real")) is None
