# SPDX-License-Identifier: BSD-2-Clause
"""The batch evaluator: one Erlang program that evaluates expressions and reports each result
behind a marker, for `chrysopolis run --eval` (the seL4 image) and `chrysopolis baseline`.

No Eshell and no prompt scraping. The program scans and parses every expression first (a
syntax error evaluates nothing), loads the `--path` modules, then evaluates the expressions
in order with erl_eval in one worker process, carrying the bindings from one to the next,
and stops at the first that fails. Each `--eval` text may hold several expressions, each
ending with a full stop (`'1. 2.'` is two). What it prints, one line each, behind a marker
made new for every run (so no output of an expression can pass for one of these lines):

    MARK ready N          the program runs; N expressions follow
    MARK = K TERM         expression K (1..N) returned TERM (`~tp`, no depth or line limit)
    MARK ! K TEXT         one line of the error of expression K (0: before any expression,
                          e.g. a module that fails to load), as the Eshell prints it
    MARK done S           the program is about to halt(S): 0 every expression returned, 1 not

A marker may follow text an expression printed without a newline: the reader takes what is
before the marker on that line as output. Anything else the guest prints is output.
"""

import re
import secrets
from dataclasses import dataclass

MARK_WORD = "chrysopolis-batch"

# The protocol's half of both programs: the marker and the lines said behind it.
PROTOCOL = """
io:setopts([{encoding, unicode}]),
Mark = <<"%(mark)s">>,
Say = fun(Tag, S) -> io:put_chars([Mark, $\\s, Tag, $\\s, S, $\\n]) end,
Lines = fun(K, Text) ->
    [Say(["! ", integer_to_list(K)], L)
     || L <- string:split(unicode:characters_to_list(Text), "\\n", all), L =/= ""],
    ok
end,
"""
# The Erlang program. `%%(name)s` fields are filled by `code`; expressions and module names
# travel as code points, so no quoting can break the program.
PROGRAM = (
    PROTOCOL
    + """Pretty = fun(T, Col) ->
    io_lib_pretty:print(T, [{column, Col}, {line_length, 80}, {depth, 30},
                            {line_max_chars, 60}, {encoding, unicode}])
end,
Hide = fun(M, _F, _A) -> (M =:= erl_eval) or (M =:= shell) end,
Exc = fun(C, R, St) ->
    ["** ", erl_error:format_exception(4, C, R, St, Hide, Pretty, unicode)]
end,
Where = fun(J, {L, C}) -> io_lib:format("--eval ~w, ~w:~w", [J, L, C]);
           (J, L) -> io_lib:format("--eval ~w, line ~w", [J, L]) end,
Split = fun Split([], [], Acc) -> {ok, lists:reverse(Acc)};
            Split([], Part, _Acc) -> {more, element(2, hd(Part))};
            Split([{dot, _} = D | Ts], Part, Acc) ->
                Split(Ts, [], [lists:reverse([D | Part]) | Acc]);
            Split([T | Ts], Part, Acc) -> Split(Ts, [T | Part], Acc) end,
Parse = fun({J, Text}) ->
    case erl_scan:string(Text, {1, 1}) of
        {error, {Loc, Mod, Why}, _} ->
            {error, ["* ", Where(J, Loc), ": ", Mod:format_error(Why)]};
        {ok, [], _} ->
            {error, ["* ", Where(J, {1, 1}), ": no expression"]};
        {ok, Ts, _} ->
            case Split(Ts, [], []) of
                {more, Loc} -> {error, ["* ", Where(J, Loc), ": missing full stop"]};
                {ok, Chunks} ->
                    lists:foldr(
                        fun(_, {error, _} = E) -> E;
                           (Chunk, {ok, Acc}) ->
                               case erl_parse:parse_exprs(Chunk) of
                                   {ok, Es} -> {ok, [Es | Acc]};
                                   {error, {Loc, Mod, Why}} ->
                                       {error, ["* ", Where(J, Loc), ": ", Mod:format_error(Why)]}
                               end
                        end, {ok, []}, Chunks)
            end
    end
end,
Parsed = [Parse(X) || X <- lists:zip(lists:seq(1, length(%(exprs)s)), %(exprs)s)],
Errors = [E || {error, E} <- Parsed],
Mods = [list_to_atom(M) || M <- %(modules)s],
Loaded = case Mods of
    [] -> ok;
    _ -> code:ensure_modules_loaded(Mods)
end,
Status = if
    Errors =/= [] ->
        [Lines(0, E) || E <- Errors],
        1;
    Loaded =/= ok ->
        {error, Bad} = Loaded,
        [Lines(0, io_lib:format("** module ~tw failed to load (~tw): is its --path "
                                "file a .beam of Erlang/OTP 29 or older?", [M, R]))
         || {M, R} <- Bad],
        1;
    true ->
        Exprs = lists:zip(lists:seq(1, length(lists:append([Es || {ok, Es} <- Parsed]))),
                          lists:append([Es || {ok, Es} <- Parsed])),
        Say(<<"ready">>, integer_to_list(length(Exprs))),
        Ctl = self(),
        Failed = {Mark, failed},
        Run = fun Run([], _) -> ok;
                  Run([{K, Es} | Rest], B0) ->
                      Ctl ! {Mark, at, K},
                      try erl_eval:exprs(Es, B0) of
                          {value, V, B1} ->
                              Say(["= ", integer_to_list(K)],
                                  io_lib:format("~*tp", [1 bsl 30, V])),
                              Run(Rest, B1)
                      catch C:R:St ->
                          Lines(K, Exc(C, R, St)),
                          exit(Failed)
                      end
              end,
        {W, Ref} = spawn_monitor(fun() -> Run(Exprs, erl_eval:new_bindings()) end),
        Wait = fun Wait(At) ->
            receive
                {Mark, at, K} -> Wait(K);
                {'DOWN', Ref, process, W, normal} -> 0;
                {'DOWN', Ref, process, W, Failed} -> 1;
                {'DOWN', Ref, process, W, Why} -> Lines(At, Exc(exit, Why, [])), 1
            end
        end,
        Wait(0)
end,
Say(<<"done">>, integer_to_list(Status)),
halt(Status).
"""
)


# The same protocol for Elixir (`run --shell iex --eval`): each text is one Elixir
# expression block, no full stop, parsed by Code.string_to_quoted (a syntax error
# evaluates nothing) and evaluated by Code.eval_quoted with the bindings carried; a result
# is printed as IEx shows it, on one line (inspect, no limits), an error as IEx prints it.
ELIXIR_PROGRAM = (
    PROTOCOL
    + """{ok, _} = application:ensure_all_started(elixir),
Texts = [unicode:characters_to_binary(T) || T <- %(exprs)s],
Parsed = [{J, 'Elixir.Code':string_to_quoted(T, [{file, <<"--eval">>}, {line, 1}])}
          || {J, T} <- lists:zip(lists:seq(1, length(Texts)), Texts)],
Errors = [{J, E} || {J, {error, E}} <- Parsed],
Status = case Errors of
    [_ | _] ->
        [Lines(0, io_lib:format("** (SyntaxError) --eval ~w, line ~w: ~ts~ts",
                                [J, proplists:get_value(line, Meta, 1),
                                 if is_binary(Msg) -> Msg; true -> io_lib:format("~tp", [Msg]) end,
                                 Tok]))
         || {J, {Meta, Msg, Tok}} <- Errors],
        1;
    [] ->
        Say(<<"ready">>, integer_to_list(length(Parsed))),
        Ctl = self(),
        Failed = {Mark, failed},
        Show = [{limit, infinity}, {printable_limit, infinity}, {width, infinity}],
        Run = fun Run([], _) -> ok;
                  Run([{K, {ok, Q}} | Rest], B0) ->
                      Ctl ! {Mark, at, K},
                      try 'Elixir.Code':eval_quoted(Q, B0) of
                          {V, B1} ->
                              Say(["= ", integer_to_list(K)], 'Elixir.Kernel':inspect(V, Show)),
                              Run(Rest, B1)
                      catch C:R:St ->
                          Lines(K, 'Elixir.Exception':format(C, R, St)),
                          exit(Failed)
                      end
              end,
        {W, Ref} = spawn_monitor(fun() -> Run(Parsed, []) end),
        Wait = fun Wait(At) ->
            receive
                {Mark, at, K} -> Wait(K);
                {'DOWN', Ref, process, W, normal} -> 0;
                {'DOWN', Ref, process, W, Failed} -> 1;
                {'DOWN', Ref, process, W, Why} ->
                    Lines(At, 'Elixir.Exception':format(exit, Why, [])), 1
            end
        end,
        Wait(0)
end,
Say(<<"done">>, integer_to_list(Status)),
halt(Status).
"""
)


def new_mark() -> str:
    """A marker no earlier run used: the word and 64 random bits."""
    return f"{MARK_WORD}-{secrets.token_hex(8)}"


def _charlist(s: str) -> str:
    return "[" + ",".join(str(ord(c)) for c in s) + "]"


def code(exprs: list[str], mark: str, modules: list[str] = ()) -> str:
    """The program for `exprs` (each a text of one or more expressions ending in full
    stops), loading `modules` first."""
    return PROGRAM % {
        "mark": mark,
        "exprs": "[" + ",".join(map(_charlist, exprs)) + "]",
        "modules": "[" + ",".join(map(_charlist, modules)) + "]",
    }


def elixir_code(exprs: list[str], mark: str) -> str:
    """The Elixir program for `exprs` (each one Elixir expression block)."""
    return ELIXIR_PROGRAM % {"mark": mark, "exprs": "[" + ",".join(map(_charlist, exprs)) + "]"}


@dataclass
class Line:
    """One line of what the guest printed, as the protocol reads it."""

    output: str  # text an expression (or the system) printed on this line ('' if none)
    kind: str = ""  # '' (output only), 'ready', '=', '!', 'done'
    index: int = 0  # K for '=' and '!'; N for 'ready'; S for 'done'
    text: str = ""  # the term of '=', the error line of '!'


def parser(mark: str):
    """A function reading one console line (no newline) into a Line."""
    rx = re.compile(re.escape(mark) + r" (?:(ready|done) (\d+)|([=!]) (\d+) ?(.*))$", re.S)

    def parse(line: str) -> Line:
        at = line.find(mark)
        if at < 0:
            return Line(line)
        m = rx.match(line, at)
        if not m:
            return Line(line)
        if m.group(1):
            return Line(line[:at], m.group(1), int(m.group(2)))
        return Line(line[:at], m.group(3), int(m.group(4)), m.group(5))

    return parse


class Reader:
    """Reads the program's lines as they come and keeps what they say."""

    def __init__(self, mark: str) -> None:
        self.parse = parser(mark)
        self.total: int | None = None  # N, once `ready` came
        self.results: dict[int, str] = {}
        self.errors: dict[int, list[str]] = {}
        self.status: int | None = None  # S, once `done` came

    def feed(self, raw: str) -> Line:
        ln = self.parse(raw)
        if ln.kind == "ready":
            self.total = ln.index
        elif ln.kind == "=":
            self.results[ln.index] = ln.text
        elif ln.kind == "!":
            self.errors.setdefault(ln.index, []).append(ln.text)
        elif ln.kind == "done":
            self.status = ln.index
        return ln

    @property
    def running(self) -> int:
        """The expression being evaluated (1-based; 0 before the first)."""
        return len(self.results) + 1 if self.total is not None else 0
