"""Import formats of zoo_jax.convert, one module each (`--from=NAME`), exposing `scan(src)`."""
