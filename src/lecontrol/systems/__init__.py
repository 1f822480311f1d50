"""Learning systems: vector fields $h(w, g)$ and expected losses."""

from .base import AbstractLearningSystem as AbstractLearningSystem
from .single_layer import SingleLayerGain as SingleLayerGain
from .single_neuron import SingleNeuronGain as SingleNeuronGain
