"""Channels: one package per messaging platform, each a plugin (core/registry.py `ChannelPlugin`) with its own
settings model, declared capabilities and optional HTTP routes. A channel is turned on by its block in the
config's `channels:`; nothing outside its package changes when one is added."""
