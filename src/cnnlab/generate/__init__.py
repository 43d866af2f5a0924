"""Part D: GANs. DCGAN and conditional DCGAN (networks, D/G steps), training on the shared loop,
judging samples in a digit classifier's space, and the D-Q4..Q9 studies."""

from cnnlab.generate.judge import Judge, frechet_distance, judge_metrics, load_judge
from cnnlab.generate.networks import (CondDiscriminator, CondGenerator, Discriminator, Generator, build_gan,
                                      dcgan_init)
from cnnlab.generate.steps import d_step, g_step, generator_loss
from cnnlab.generate.train import GANConfig, GANRun, config_from, load_gan_data, sample, train_gan

__all__ = ["Generator", "Discriminator", "CondGenerator", "CondDiscriminator", "build_gan", "dcgan_init",
           "d_step", "g_step", "generator_loss", "GANConfig", "GANRun", "config_from", "train_gan", "sample",
           "load_gan_data", "Judge", "load_judge", "judge_metrics", "frechet_distance"]
