"""Synthetic speech-rtMRI corpus: the physics it samples and the writers that assemble it.

The physics lives in modules that build on each other:

- :mod:`sirem_cli.synth.lexicon`: ARPAbet phones with articulatory targets, a small English
  lexicon and :func:`~sirem_cli.synth.lexicon.sample_utterance` (word and phone tiers that tile
  the utterance, as in an Annot-16 TextGrid);
- :mod:`sirem_cli.synth.articulation`: :func:`~sirem_cli.synth.articulation.articulate`, smooth
  coarticulated trajectories of 7 normalized articulatory parameters in continuous time;
- a midsagittal vocal-tract phantom driven by those parameters, all views from one geometry:
  :mod:`~sirem_cli.synth.anatomy` (per-speaker anatomy and the field of view),
  :mod:`~sirem_cli.synth.shapes` (the capsules and polygons it is built from),
  :mod:`~sirem_cli.synth.vocaltract` (walls, gridlines and the moving articulators),
  :mod:`~sirem_cli.synth.images` (upright proton-density images),
  :mod:`~sirem_cli.synth.labels` (label rasters), :mod:`~sirem_cli.synth.contours` (Annot-16
  contours) and :mod:`~sirem_cli.synth.airway` (the area function along the airway);
- :mod:`sirem_cli.synth.speech`: speech audio synthesized from the same trajectory through the
  area function (tube model, voiced and noise sources, nasal coupling).

Seeding convention (what keeps images and audio consistent): ``articulate`` takes exactly one
draw from the generator it is given and derives the whole trajectory from that draw, so
``articulate(utt, t1, np.random.default_rng(s))`` and ``articulate(utt, t2,
np.random.default_rng(s))`` sample one continuous trajectory. ``synthesize_audio`` calls its
``articulate_fn(utt, times, rng)`` with the generator it receives and then draws its noise from
that generator; to give the audio the trajectory of the images, pass
``articulate_fn=lambda u, t, _rng: articulate(u, t, np.random.default_rng(traj_seed))``.
"""
