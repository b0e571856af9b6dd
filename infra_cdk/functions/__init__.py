"""Code the stack deploys as AWS Lambda functions (inline: each module is one function's source)."""
