"""`pgolf demo`: train a small model, measure and plot it, write a report (make demo)."""
