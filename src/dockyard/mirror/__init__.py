"""The pull-through cache: one registry in proxy mode per upstream, shared by stacks and pools."""
