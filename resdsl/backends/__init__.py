"""Back ends: graph -> something runnable or readable. Each imports torch only itself."""
