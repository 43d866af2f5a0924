"""Part C: unsupervised domain adaptation with DANN (Ganin & Lempitsky 2015), MNIST → MNIST-M.

``mnistm``     the MNIST-M builder (seeded, cached) and the photographs it blends with
``domains``    source/target pairs of registered datasets, folders or MNIST-M, held in memory
``grl``        the gradient reversal layer and the λ / learning-rate schedules
``networks``   the course's DANN network (registered as ``dann_mnist``)
``dann``       source-only, DANN and target-only training on the shared ``fit`` loop
``selection``  choosing a checkpoint without target labels (source validation, DEV, entropy)
``pseudo``     self-training rounds on confident target pseudo-labels (C-Q4)
``studies``    C-Q1 (no GRL), C-Q3 (λ schedules), t-SNE of the features
"""
