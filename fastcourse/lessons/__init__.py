"""Layer 7, lessons: layer arithmetic (explain, flops), the lesson's concepts, the one-command
reproduction of the MNIST lesson, and the benchmarks."""
