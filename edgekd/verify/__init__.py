"""Verification: conversion parity and distillation gap (`parity`), latency (`latency`), the device
fingerprint (`device`), reports (`report`, `merge`, `plots`) and the runner (`runner`) behind
`edgekd verify`. `parity` is numpy-only so an app can run the same checks without torch."""
