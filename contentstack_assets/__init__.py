"""contentstack_assets: keep Contentstack Personalize in step with a SQL user table, as Dagster assets."""

__version__ = "0.1.0"
