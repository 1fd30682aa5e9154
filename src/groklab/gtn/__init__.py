"""Generative Teaching Networks (Such et al. 2020, arXiv 1912.07768): meta-learn a generator
whose data teaches a fresh learner fastest, evaluate it, and use it to rank architectures."""
from groklab.gtn.audit import audit_run
from groklab.gtn.config import GTNConfig, resolve
from groklab.gtn.curriculum import Curriculum
from groklab.gtn.data import GTNData, load_data
from groklab.gtn.generator import ConvGenerator, MLPGenerator, WNConv, WNLinear, build_generator
from groklab.gtn.learners import Learner, LearnerSpec, init_params, sample_spec
from groklab.gtn.meta import Teacher, train_gtn
from groklab.gtn.sample import sample_run

__all__ = ["GTNConfig", "resolve", "Curriculum", "GTNData", "load_data", "ConvGenerator",
           "MLPGenerator", "WNConv", "WNLinear", "build_generator", "Learner", "LearnerSpec",
           "init_params", "sample_spec", "Teacher", "train_gtn", "sample_run", "audit_run"]
