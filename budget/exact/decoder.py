"""The decoder an artifact needs, as the smallest self-contained Python: only the formats its plan uses.

`decoder_source(plan, compressor)` writes a module defining `load(path) -> {name: tensor}` that
reads exactly what `build_artifact(sd, plan, compressor)` writes, with the standard library,
torch, numpy and the compressor's own module only (never pgolf), and returns the dequantized
state dict bit for bit as pgolf's `read_artifact` does. What the plan cannot produce is left out:
an int6 plan gets no ternary or float8 code, a zlib artifact no zstd import. The baseline's
own `official-int8` (and `fp16-embed`) + zlib artifact is the plain `.ptz` its script already
reads: no decoder (empty source). Code bytes count, so the source is terse on purpose.

>>> src = decoder_source("int6", "zstd")
>>> "zstandard" in src, "base3" in src, len(src.encode()) < 2000
(True, False, True)
"""
from __future__ import annotations

from pgolf.budget.exact.build import assign, export_holds, is_official_zlib
from pgolf.budget.files.codebytes import unwrap_source
from pgolf.budget.exact import container
from pgolf.budget.files.compressors import best_codec_ids, get_compressor
from pgolf.budget.quant.grouped_schemes import BinaryScheme, IntScheme, TernaryScheme
from pgolf.budget.quant.plans import resolve_plan
from pgolf.budget.quant.schemes import FLOAT_FORMATS, FloatScheme, OfficialInt8Scheme, PassthroughScheme, get_scheme
from pgolf.budget.files.wrap import smallest_wrapper

_DECOMPRESS = {  # codec -> (import, expression of the decompressed bytes of `b`)
    "none": ("", "b"),
    "zlib": ("zlib", "zlib.decompress(b)"),
    "lzma": ("lzma", "lzma.decompress(b)"),
    "zstd": ("zstandard as Z", "Z.ZstdDecompressor(max_window_size=1<<27).decompressobj().decompress(b)"),
    "brotli": ("brotli", "brotli.decompress(b)"),
    "zpaq": ("zpaq", "zpaq.decompress(b)"),
    "ans": ("struct", "_a(b)"),
    "best": ("struct", "_b(b)"),
}
# best's codec id -> (import, expression decoding the segment `x`); files/compressors.py's ids
_BEST_CODECS = {0: ("", "_a(x)"), 4: ("", "_m(x)"),
                1: ("zstandard as Z", "Z.ZstdDecompressor(max_window_size=1<<27).decompressobj().decompress(x)"),
                2: ("lzma", "lzma.decompress(x)"), 5: ("brotli", "_r(brotli.decompress(x),2)"),
                3: ("brotli", "brotli.decompress(x)")}
_BEST_READER = '''def _b(b):
 k=struct.unpack_from("<I",b)[0];p=4;o=[]
 if k>>31:return _d(b[4],b[5:])
 for _ in range(k):c,m=struct.unpack_from("<BI",b,p);o.append(_d(c,b[p+5:p+5+m]));p+=5+m
 return b"".join(o)
'''


def _best_code(ids) -> tuple[list[str], str]:
    """(modules, source) of `best`'s segment dispatch, holding only the codecs `ids` (every one when None)."""
    used = [i for i in _BEST_CODECS if ids is None or i in ids]
    modules = list(dict.fromkeys(_BEST_CODECS[i][0] for i in used if _BEST_CODECS[i][0]))
    chain = _BEST_CODECS[used[-1]][1] if used else "x"  # no segment: _d is never called
    for i in reversed(used[:-1]):
        chain = f"{_BEST_CODECS[i][1]} if c=={i} else {chain}"
    return modules, f"def _d(c,x):return {chain}\n" + _BEST_READER


# files/entropy.py's format, segments of files/compressors.py's `ans`: constriction when importable,
# else the same ANS decode in Python integers (identical symbols, ~2 us each).
_ANS = '''def _a(b):
 k=struct.unpack_from("<I",b)[0];p=4;o=[]
 for _ in range(k):m=struct.unpack_from("<I",b,p)[0];o.append(_s(b[p+8:p+8+m]));p+=8+m
 return b"".join(o)
def _s(b):
 N=struct.unpack_from("<I",b)[0]
 if N==0:return b""
 k=b[4]+1;F=[];f=0
 if k>32:P=n.flatnonzero(n.unpackbits(n.frombuffer(b,n.uint8,32,5),bitorder="little")).astype(n.uint8);p=37
 else:P=n.frombuffer(b,n.uint8,k,5);p=5+k
 for _ in range(k):
  v=s=0
  while 1:
   c=b[p];p+=1;v|=(c&127)<<s;s+=7
   if c<128:break
  f+=(v>>1)^-(v&1);F.append(f)
 if k==1:return P.tobytes()*N
 W=n.frombuffer(b,"<u4",struct.unpack_from("<I",b,p)[0],p+4);F=n.array(F)
 try:
  import constriction as C
  return P[C.stream.stack.AnsCoder(n.array(W,n.uint32)).decode(C.stream.model.Categorical(F/65536.,perfect=True),N)].tobytes()
 except ImportError:pass
 L=n.repeat(n.arange(k),F).tolist();G=(F<<8).tolist();U=(n.cumsum(F)-F<<8).tolist();w=W.tolist();j=len(w);I=[0]*N
 x,j=(w[j-1]<<32|w[j-2],j-2) if j>1 else (w[0],0)
 for t in range(N):
  q=x&16777215;s=L[q>>8];I[t]=s;x=(x>>24)*G[s]+q-U[s]
  if x<4294967296 and j:j-=1;x=x<<32|w[j]
 return P[n.array(I)].tobytes()
'''

# files/grouped_ans.py: `_m` one matrix coded by row / column class (`best`'s id 4), `_h` the
# ans:rowG / ans:colG stream (matrices at their gaps, the rest as `ans`).
_GROUPED = '''def _l(b,p):
 v=s=0
 while 1:
  c=b[p];p+=1;v|=(c&127)<<s;s+=7
  if c<128:return v,p
def _m(b):
 R,p=_l(b,0);C,p=_l(b,p);A,G=b[p+4],b[p+5];p+=6;N=(R,C)[A];k=(G-1).bit_length();z=-(-N*k//8)
 L=(n.unpackbits(n.frombuffer(b,n.uint8,z,p),bitorder="little")[:N*k].reshape(N,k).astype(int)<<n.arange(k)).sum(1);p+=z;o=n.empty((R,C),n.uint8)
 for g in range(G):
  m=struct.unpack_from("<I",b,p)[0];x=n.frombuffer(_s(b[p+4:p+4+m]),n.uint8);p+=4+m
  if A:o[:,L==g]=x.reshape(R,-1)
  else:o[L==g]=x.reshape(-1,C)
 return o.tobytes()
'''
_SHAPED = '''def _h(b):
 k=struct.unpack_from("<I",b,2)[0];p=6;O=[];o=[];a=0
 for _ in range(k):v,p=_l(b,p);O.append(v)
 m=struct.unpack_from("<I",b,p)[0];r=_a(b[p+4:p+4+m]);p+=4+m
 for v in O:m=struct.unpack_from("<I",b,p)[0];o+=[r[a:a+v],_m(b[p+4:p+4+m])];a+=v;p+=4+m
 return b"".join(o)+r[a:]
'''

_REGROUP = '''def _r(b,w):
 a=n.frombuffer(b,n.uint8);m=a.size-a.size%w
 return b if m==0 or w==1 else a[:m].reshape(w,m//w).T.tobytes()+a[m:].tobytes()
'''

_EXPORT = '''def _e(r):
 o=t.load(io.BytesIO(r),weights_only=True);Q=o.get("qmeta",{});P=o.get("passthrough_orig_dtypes",{});R={}
 for k,q in o["quantized"].items():
  d,s=getattr(t,o["dtypes"][k]),o["scales"][k]
  R[k]=(q.float()*s.float().view(q.shape[0],*[1]*(q.ndim-1))).to(d).contiguous() if Q.get(k,{}).get("scheme")=="per_row" or s.ndim>0 else (q.float()*float(s.item())).to(d).contiguous()
 for k,x in o["passthrough"].items():
  x=x.detach().contiguous();R[k]=x.to(getattr(t,P[k])).contiguous() if k in P else x
 return R
'''

_CONTAINER = '''def _c(r):
 h=struct.unpack("<I",r[-4:])[0];T=json.loads(r[-4-h:-4])["tensors"];U=[x for x in T if x[6] is None];o=0;V={};S={};R={}
 for x in [x for x in U if _q(x[3])]+[x for x in U if not _q(x[3])]:V[x[0]]=r[o:o+x[4]];o+=x[4]
 for x in U:S[x[0]]=r[o:o+x[5]];o+=x[5]
 for k,s,d,c,_,_,y in T:R[k]=R[y] if y else _t(c,V[k],S[k],s,getattr(t,d))
 return R
'''

_FLOAT_DTYPES = {name: str(dtype).removeprefix("torch.") for dtype, name in FLOAT_FORMATS.items()}  # fp32: float32


def _families(plan) -> dict[str, object]:
    """scheme name -> scheme object, for every scheme the plan can give a tensor (passthrough rules included)."""
    specs = [s for _, s in plan.rules] + [plan.default, "fp32", "fp16", "passthrough"]
    return {get_scheme(s).name: get_scheme(s) for s in specs}


def _grouped_code(schemes: list) -> str:
    """`_g(c,v,s,S)`: int8 symbols of a grouped scheme from its values bytes, only the storages in use."""
    lines = ["def _g(c,v,S,N):", " a=n.frombuffer(v,n.uint8)"]
    storages = {(type(s).__name__, s.storage) for s in schemes}
    if any(st == "byte" for _, st in storages):
        lines.append(' if c.endswith(":byte") or c[0]=="i" and not c.endswith(":packed"):return a.view(n.int8)')
    if ("TernaryScheme", "base3") in storages:
        lines.append(' if c[0]=="t" and ":" not in c.replace(":group","",1):'
                     'return ((a[:,None]//n.array([1,3,9,27,81],n.uint16))%3).reshape(-1)[:N].astype(n.int8)-1')
    if ("BinaryScheme", "bits") in storages:
        lines.append(' if c[0]=="b":return n.unpackbits(a,bitorder="little")[:N].astype(n.int8)*2-1')
    if any(st == "packed" for _, st in storages):
        lines.append(' b=2 if c[0]=="t" else int(c[3]);u=n.unpackbits(a,bitorder="little")[:N*b].reshape(N,b)')
        lines.append(' return ((u.astype(n.int64)<<n.arange(b)).sum(1)-(1<<b-1)+1).astype(n.int8)')
    return "\n".join(lines) + "\n"


def _tensor_code(schemes: list) -> str:
    """`_t(c,v,s,S,d)`: one tensor from its scheme name, values and scales bytes."""
    lines = ["def _t(c,v,s,S,d):"]
    floats = sorted({s.name for s in schemes if isinstance(s, FloatScheme)})
    if floats:
        table = ",".join(f'"{f}":t.{_FLOAT_DTYPES[f]}' for f in floats)
        lines.append(f" F={{{table}}}")
        lines.append(" if c in F:return t.frombuffer(bytearray(v),dtype=F[c]).to(d).reshape(S).contiguous()")
    if any(isinstance(s, PassthroughScheme) for s in schemes):
        lines.append(' if c=="passthrough":return t.frombuffer(bytearray(v),dtype=d).reshape(S).contiguous()')
    if any(isinstance(s, OfficialInt8Scheme) for s in schemes):
        lines.append(' if c.startswith("int8_clean"):')
        lines.append('  q=t.frombuffer(bytearray(v),dtype=t.int8).reshape(S).float()')
        lines.append('  if len(S)==2:return (q*t.frombuffer(bytearray(s),dtype=t.float16).float().view(S[0],1)).to(d).contiguous()')
        lines.append('  return (q*float(t.frombuffer(bytearray(s),dtype=t.float32)[0])).to(d).contiguous()')
    grouped = [s for s in schemes if isinstance(s, (IntScheme, TernaryScheme, BinaryScheme))]
    if grouped:
        default_group = "128" if any(not isinstance(s, IntScheme) for s in grouped) else "0"
        lines += [
            ' g=c.split("group(");R=S[0] if len(S)>1 else 1;C=math.prod(S)//R if R else 0;N=R*C',
            f' G=int(g[1].split(")")[0]) if len(g)>1 else ({default_group} if c[0] in "tb" else 0);z=min(G,C) if G else C'
            ';m=-(-C//z) if z else 0',
            ' q=t.from_numpy(_g(c,v,S,N).astype(n.int8)).reshape(R,C).float()',
            ' if m*z!=C:q=t.nn.functional.pad(q,(0,m*z-C))',
            ' s=t.frombuffer(bytearray(s),dtype=t.float16).reshape(R*m,1).float() if s else t.zeros(0,1)',
            ' return (q.reshape(R*m,z)*s).reshape(R,m*z)[:,:C].reshape(S).to(d).contiguous()',
        ]
    return "\n".join(lines) + "\n"


def decoder_source(plan, compressor, sd=None, artifact: bytes | None = None) -> str:
    """Python source of `load(path)` for artifacts of `plan` + `compressor`; '' when the baseline reads them.

    With the state dict `sd`, only the schemes its tensors get; without, every scheme the plan names
    (its large-matrix schemes assumed used: a model whose tensors all pass through would make an
    official export instead, so give `sd` for such models). With the built `artifact` of a `best`
    plan, only the codecs its segments use (the decoder then reads that artifact, not every one).
    """
    plan = resolve_plan(plan)
    if sd is None:
        schemes = list(_families(plan).values())
    else:
        schemes = list({i.scheme.name: i.scheme for i in assign(sd, plan, check_finite=False)}.values())
    return decoder_for(schemes, compressor, best_ids_of(artifact) if artifact is not None else None)


def best_ids_of(artifact: bytes) -> frozenset[int] | None:
    """The `best` codec ids a pgolf artifact's stream uses; None for any other artifact (the
    baseline's plain .ptz included); ValueError when a pgolf frame or a best stream is cut."""
    if not container.is_artifact(artifact):
        return None
    _, spec, body = container.parse_frame(artifact)
    return best_codec_ids(body) if get_compressor(spec).codec == "best" else None


def decoder_for(schemes, compressor, best_ids=None) -> str:
    """`decoder_source` from the schemes (objects or names) an artifact's tensors use; for `best`,
    `best_ids` (compressors.best_codec_ids of its stream) keeps only the codecs it holds."""
    comp = get_compressor(compressor)
    schemes = [get_scheme(s) if isinstance(s, str) else s for s in schemes]
    export = export_holds(schemes)
    if export and is_official_zlib(comp):  # the baseline's own .ptz: its script reads it
        return ""
    module, expression = _DECOMPRESS[comp.codec]
    shaped = comp.codec == "ans" and bool(comp.level)
    best = comp.codec == "best"
    ids = None if not best or best_ids is None else set(best_ids)
    expression = "_h(b)" if shaped else expression
    imports = ["torch as t", "numpy as n"] + ([module] if module else [])
    body = f" b=open(p,'rb').read();b={expression.replace('(b)', '(b[8+b[7]:])') if module else 'b[8+b[7]:]'}\n"
    ans = [_ANS] if comp.codec == "ans" or best and (ids is None or ids & {0, 4}) else []
    ans += [_GROUPED] if best and (ids is None or 4 in ids) or shaped else []
    ans += [_SHAPED] if shaped else []
    if best:
        modules, code = _best_code(ids)
        imports += modules
        ans.append(code)
    for tr in reversed(comp.transforms):
        body += f" b=_r(b,{tr.width})\n"
    parts = ans + ([_REGROUP] if comp.transforms or best and (ids is None or 5 in ids) else [])
    if export:
        imports.append("io")
        parts.append(_EXPORT)
        body += " return _e(b)\n"
    else:
        imports += ["json", "struct"] + (["math"] if any(isinstance(s, (IntScheme, TernaryScheme, BinaryScheme))
                                                          for s in schemes) else [])
        quantized = sorted({type(s).__name__ for s in schemes if s.kind == "quantized"})
        test = " or ".join({"IntScheme": 'c[:3]=="int"', "TernaryScheme": 'c[0]=="t"', "BinaryScheme": 'c[0]=="b"',
                            "OfficialInt8Scheme": 'c[:3]=="int"'}[q] for q in quantized) or "0"
        parts += [f"def _q(c):return {test}\n", _CONTAINER, _tensor_code(schemes)]
        grouped = [s for s in schemes if isinstance(s, (IntScheme, TernaryScheme, BinaryScheme))]
        if grouped:
            parts.append(_grouped_code(grouped))
        body += " return _c(b)\n"
    head = f"import {','.join(dict.fromkeys(imports))}\n"
    return head + "".join(parts) + "def load(p):\n" + body


def count_decoder(report, script_source: bytes | None) -> int:
    """Add the decoder a budget report's artifact needs to its bytes_code (and total, headroom).

    `script_source`: the training script's (inner) source; a script that already holds the decoder
    text adds nothing. Returns the bytes added; the headline gains bytes_code_decoder.
    """
    head = report.headline
    artifact = getattr(report, "artifact", None)
    ids = best_ids_of(artifact) if artifact else None
    source = decoder_for(sorted(set(report.frame["scheme"])), head["compressor"], ids)
    included = bool(source) and script_source is not None and \
        source.split("\n", 1)[1] in script_source.decode("utf-8", "replace")
    added = 0 if included else len(source.encode("utf-8"))
    head["bytes_code"] += added
    head["bytes_total"] += added
    head["headroom_bytes"] -= added
    head["bytes_code_decoder"] = added
    if source:
        report.notes.append(f"bytes_code includes the {added:,}-byte decoder this artifact needs (pgolf decoder)"
                            if added else "the script already holds the decoder this artifact needs")
    return added


SPLICE_NAME = "pgolf_load"


def splice_decoder(script: bytes, decoder: str) -> bytes:
    """The script with `pgolf_load(path) -> state dict` added before its main guard (else at its end).

    The decoder runs in its own namespace (exec into a fresh dict), so its short names never meet
    the script's. A wrapped script is unwrapped, spliced and wrapped again (`pgolf wrap`); a script
    that already holds the decoder, or an empty decoder, leaves it unchanged.
    """
    inner = unwrap_source(script)
    text = (inner.source if inner is not None else script).decode("utf-8")
    if not decoder or decoder.split("\n", 1)[1] in text:
        return script
    if "'''" in decoder or "\\" in decoder:
        raise ValueError("decoder text cannot sit in a raw triple-quoted string")
    block = f"{SPLICE_NAME}=(lambda g:(exec(r'''{decoder}''',g),g['load'])[1])({{}})\n"
    at = max(text.rfind('\nif __name__ == "__main__":'), text.rfind("\nif __name__ == '__main__':"))
    text = text[:at + 1] + block + text[at + 1:] if at >= 0 else text + ("" if text.endswith("\n") else "\n") + block
    out = text.encode("utf-8")
    return smallest_wrapper(out).text.encode("utf-8") if inner is not None else out
