"""Pure planners and policies: typed state in, typed plan out. No Prefect, no SDK, no I/O."""
