"""Layer 7, lessons: layer arithmetic (explain), the lesson's concepts and the one-command
reproduction of the MNIST lesson. The benchmarks are not part of this layer."""
