"""Recipes: YAML documents validated into typed, frozen objects (see :mod:`compress.recipe.loader`)."""
