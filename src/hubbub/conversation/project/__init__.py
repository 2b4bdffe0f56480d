"""Projects, the agent definitions: the file schema, the loader and the template sandbox."""
