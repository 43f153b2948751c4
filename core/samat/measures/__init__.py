"""samat's built-in measures of a trained model (docs/measures.md): weight-space sharpness
(:class:`SAMSharpness`), the loss Hessian's spectrum and trace (:class:`HessianSpectrum`) and
the input-gradient norm (:class:`InputGradientNorm`)."""

from samat.measures.hessian import HessianSpectrum
from samat.measures.input_gradient import InputGradientNorm
from samat.measures.sharpness import SAMSharpness

__all__ = ["HessianSpectrum", "InputGradientNorm", "SAMSharpness"]
