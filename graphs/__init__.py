"""The generation state and StateGraph; batch runs with a checkpointer."""
