"""Learning systems: vector fields $h(w, g)$ and expected losses."""

from .base import (
    AbstractGradientFlowSystem as AbstractGradientFlowSystem,
    AbstractLearningSystem as AbstractLearningSystem,
)
from .engagement import (
    CategoryEngagement as CategoryEngagement,
    TaskEngagement as TaskEngagement,
)
from .feedback_alignment import FeedbackAlignment as FeedbackAlignment
from .gain import TwoLayerGain as TwoLayerGain
from .learning_rate import LearningRate as LearningRate
from .maml import MAML as MAML
from .single_layer import SingleLayerGain as SingleLayerGain
from .single_neuron import SingleNeuronGain as SingleNeuronGain
from .tanh import TanhTaylor as TanhTaylor
from .two_layer import (
    AbstractTwoLayerSystem as AbstractTwoLayerSystem,
    TwoLayerLinear as TwoLayerLinear,
)
