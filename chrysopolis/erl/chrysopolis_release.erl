%% SPDX-License-Identifier: BSD-2-Clause
%% Host side of `chrysopolis build --app`: compiles OTP applications and makes their release
%% with systools. Run by the baseline emulator (the image's own OTP) from chrysopolis/apps.py,
%% which reads the report file this writes: one `error:`, `warning:`, `app:` or `release:`
%% line each, then `ok` or `failed`.
-module(chrysopolis_release).
-export([main/1]).

main(SpecFile) ->
    {ok, Spec} = file:consult(SpecFile),
    Get = fun(K) -> proplists:get_value(K, Spec) end,
    {ok, Report} = file:open(Get(report), [write, {encoding, utf8}]),
    Say = fun(Tag, Text) -> io:format(Report, "~ts: ~ts~n", [Tag, Text]) end,
    Result =
        try build(Get, Say) of
            ok -> ok
        catch
            throw:{failed, Lines} ->
                [Say("error", L) || L <- Lines],
                failed
        end,
    io:format(Report, "~p~n", [Result]),
    ok = file:close(Report),
    Result.

build(Get, Say) ->
    Out = Get(out),
    Known = known_apps([Get(otp_lib) | Get(lib_dirs)]),
    Apps = [prepare(Dir, Shown, Out, Say) || {Dir, Shown} <- Get(apps)],
    Names = [element(1, A) || A <- Apps],
    [clash(A, Known) || A <- Apps],
    case Names -- lists:usort(Names) of
        [] -> ok;
        [Twice | _] -> throw({failed, [io_lib:format("application ~s is given twice", [Twice])]})
    end,
    Available = maps:merge(Known, maps:from_list([{N, V} || {N, V, _, _} <- Apps])),
    [check_app(A, Available, Say) || A <- Apps],
    [{Main, Vsn, _, _} | _] = Apps,
    Config = config(Get(config)),
    release(Main, Vsn, Apps, Available, Get, Config, Say).

%% Applications on the disk: name -> version, from each LIB/NAME-VSN/ebin/NAME.app.
known_apps(Libs) ->
    maps:from_list(
        [{list_to_atom(filename:basename(F, ".app")), app_vsn(F)}
         || Lib <- Libs, F <- filelib:wildcard(filename:join([Lib, "*", "ebin", "*.app"]))]).

app_vsn(File) ->
    {ok, [{application, _, Props}]} = file:consult(File),
    proplists:get_value(vsn, Props).

clash({Name, _, _, Shown}, Known) ->
    case maps:is_key(Name, Known) of
        true ->
            throw({failed, [io_lib:format("~ts: application ~s is already on the disk (OTP or "
                                          "Elixir); rename yours", [Shown, Name])]});
        false -> ok
    end.

%% An application directory: src/NAME.app.src and src/**/*.erl compiled into
%% OUT/lib/NAME-VSN/ebin, or a prebuilt ebin/NAME.app taken as it is. Returns
%% {Name, Vsn, Info, Shown}.
prepare(Dir, Shown, Out, Say) ->
    case filelib:wildcard(filename:join([Dir, "src", "*.app.src"])) of
        [AppSrc] -> compile_app(Dir, Shown, AppSrc, Out, Say);
        [_, _ | _] ->
            throw({failed, [io_lib:format("~ts/src: more than one .app.src; keep one", [Shown])]});
        [] ->
            case filelib:wildcard(filename:join([Dir, "ebin", "*.app"])) of
                [App] -> prebuilt_app(Dir, Shown, App, Out);
                _ ->
                    throw({failed, [io_lib:format(
                        "~ts: no src/APP.app.src and no ebin/APP.app; give an OTP application "
                        "directory (rebar3's layout)", [Shown])]})
            end
    end.

compile_app(Dir, Shown, AppSrc, Out, Say) ->
    ShownSrc = shown(AppSrc, Dir, Shown),
    {Name, Props} = read_app(AppSrc, ShownSrc, ".app.src"),
    Vsn = vsn(Props, ShownSrc),
    Lib = filename:join([Out, "lib", atom_to_list(Name) ++ "-" ++ Vsn]),
    Ebin = filename:join(Lib, "ebin"),
    ok = filelib:ensure_path(Ebin),
    copy_tree(filename:join(Dir, "include"), filename:join(Lib, "include")),
    true = code:add_patha(Ebin),
    Srcs = lists:sort(filelib:wildcard(filename:join([Dir, "src", "**", "*.erl"]))),
    Incs = [{i, filename:join(Dir, "include")}, {i, filename:join(Dir, "src")}
            | [{i, filename:dirname(S)} || S <- Srcs]],
    Opts = [return_errors, return_warnings, deterministic, debug_info, {outdir, Ebin} | Incs],
    Errors = lists:append([compile_one(S, Opts, Dir, Shown, Say) || S <- Srcs]),
    Errors =:= [] orelse throw({failed, Errors}),
    Modules = [list_to_atom(filename:basename(S, ".erl")) || S <- Srcs],
    {Name, Vsn, {src, AppSrc, ShownSrc, Props, Modules, Ebin}, Shown}.

prebuilt_app(Dir, Shown, App, Out) ->
    ShownApp = shown(App, Dir, Shown),
    {Name, Props} = read_app(App, ShownApp, ".app"),
    Vsn = vsn(Props, ShownApp),
    Ebin = filename:join([Out, "lib", atom_to_list(Name) ++ "-" ++ Vsn, "ebin"]),
    copy_tree(filename:join(Dir, "ebin"), Ebin),
    Beams = filelib:wildcard(filename:join(Ebin, "*.beam")),
    Modules = [list_to_atom(filename:basename(B, ".beam")) || B <- Beams],
    {Name, Vsn, {ebin, App, ShownApp, Props, Modules, Ebin}, Shown}.

shown(File, Dir, Shown) ->
    D = filename:split(Dir),
    F = filename:split(filename:absname(File)),
    case lists:prefix(D, F) of
        true -> filename:join([Shown | lists:nthtail(length(D), F)]);
        false -> File
    end.

compile_one(Src, Opts, Dir, Shown, Say) ->
    %% compile names the module's own file by its base name, an include by its path
    Where = fun(F) ->
                    case filename:basename(F) =:= filename:basename(Src) of
                        true -> shown(Src, Dir, Shown);
                        false -> shown(F, Dir, Shown)
                    end
            end,
    case compile:file(Src, Opts) of
        {ok, _Mod, Warnings} ->
            [Say("warning", L) || L <- messages(Warnings, Where, "Warning: ")],
            [];
        {error, Errors, Warnings} ->
            [Say("warning", L) || L <- messages(Warnings, Where, "Warning: ")],
            messages(Errors, Where, "")
    end.

messages(ByFile, Where, Prefix) ->
    [io_lib:format("~ts:~s: ~ts~ts", [Where(File), line(Loc), Prefix, Mod:format_error(Desc)])
     || {File, Items} <- ByFile, {Loc, Mod, Desc} <- Items].

line({Line, _Col}) -> integer_to_list(Line);
line(Line) when is_integer(Line) -> integer_to_list(Line);
line(_) -> "1".

read_app(File, ShownFile, Kind) ->
    Want = list_to_atom(filename:basename(File, Kind)),
    case file:consult(File) of
        {ok, [{application, Want, Props}]} when is_list(Props) -> {Want, Props};
        {ok, _} ->
            throw({failed, [io_lib:format("~ts:1: expected {application, ~s, [...]}.",
                                          [ShownFile, Want])]});
        {error, {Line, Mod, Why}} ->
            throw({failed, [io_lib:format("~ts:~w: ~ts", [ShownFile, Line,
                                                          Mod:format_error(Why)])]});
        {error, Posix} ->
            throw({failed, [io_lib:format("~ts: ~ts", [ShownFile, file:format_error(Posix)])]})
    end.

vsn(Props, ShownFile) ->
    case proplists:get_value(vsn, Props) of
        V when is_list(V), V =/= [] -> V;
        Other ->
            throw({failed, [io_lib:format("~ts:1: vsn is ~tp; give a version string, e.g. "
                                          "{vsn, \"0.1.0\"}", [ShownFile, Other])]})
    end.

%% The application's modules list, its applications and its mod, checked against what was
%% compiled and what the disk holds; then ebin/NAME.app written (modules filled in, as
%% rebar3 does, when the .app.src leaves them out).
check_app({Name, _Vsn, {Kind, File, ShownFile, Props, Modules, Ebin}, _}, Available, Say) ->
    At = fun(Key, Atom) -> ShownFile ++ ":" ++ integer_to_list(line_of(File, Key, Atom)) end,
    Listed = proplists:get_value(modules, Props, []),
    Missing = [M || M <- Listed, not lists:member(M, Modules)],
    Missing =:= [] orelse
        throw({failed, [io_lib:format("~ts: module ~s is in the modules list but ~ts", [
            At(modules, M), M, case Kind of src -> "src/ has no " ++ atom_to_list(M) ++ ".erl";
                                             ebin -> "ebin/ has no .beam of it" end])
                        || M <- Missing]}),
    [Say("warning", io_lib:format("~ts: module ~s is not in the modules list", [ShownFile, M]))
     || Kind =:= src, Listed =/= [], M <- Modules -- Listed],
    Deps = proplists:get_value(applications, Props, []) ++
        proplists:get_value(included_applications, Props, []),
    Unknown = [D || D <- Deps, not maps:is_key(D, Available)],
    Unknown =:= [] orelse
        throw({failed, [io_lib:format("~ts: application ~s is neither on the disk nor given "
                                      "with --app", [At(applications, D), D]) || D <- Unknown]}),
    case proplists:get_value(mod, Props) of
        undefined -> ok;
        {Mod, _Args} ->
            lists:member(Mod, Modules) orelse
                throw({failed, [io_lib:format("~ts: mod names ~s, which is not a module of ~s",
                                              [At(mod, Mod), Mod, Name])]}),
            Exports = exports(filename:join(Ebin, atom_to_list(Mod) ++ ".beam")),
            lists:member({start, 2}, Exports) orelse
                throw({failed, [io_lib:format("~ts: mod ~s exports no start/2", [At(mod, Mod),
                                                                                  Mod])]});
        Bad ->
            throw({failed, [io_lib:format("~ts: mod is ~tp; give {Module, StartArgs}",
                                          [ShownFile, Bad])]})
    end,
    case Kind of
        src ->
            %% systools wants every key; rebar3 fills these in too.
            Defaults = [{description, ""}, {registered, []}],
            Full = lists:keystore(modules, 1, Props ++ [D || {K, _} = D <- Defaults,
                                                         not lists:keymember(K, 1, Props)],
                                  {modules, Modules}),
            AppFile = filename:join(Ebin, atom_to_list(Name) ++ ".app"),
            ok = file:write_file(AppFile, io_lib:format("~tp.~n", [{application, Name, Full}]));
        ebin -> ok
    end.

exports(Beam) ->
    case beam_lib:chunks(Beam, [exports]) of
        {ok, {_, [{exports, Es}]}} -> Es;
        _ -> []
    end.

%% The line of the first `Atom` after the key `Key` in the file's tokens (1 if none).
line_of(File, Key, Atom) ->
    {ok, Bin} = file:read_file(File),
    case erl_scan:string(unicode:characters_to_list(Bin), 1) of
        {ok, Tokens, _} ->
            After = lists:dropwhile(fun({atom, _, K}) -> K =/= Key; (_) -> true end, Tokens),
            case [L || {atom, L, A} <- After, A =:= Atom] of
                [L | _] -> erl_anno:line(L);
                [] -> 1
            end;
        _ -> 1
    end.

config(none) -> "[].\n";
config({File, Shown}) ->
    case file:consult(File) of
        {ok, [Terms]} when is_list(Terms) ->
            {ok, Bin} = file:read_file(File),
            Bin;
        {ok, _} ->
            throw({failed, [io_lib:format("~ts:1: a sys.config holds one list, e.g. "
                                          "[{kernel, []}].", [Shown])]});
        {error, {Line, Mod, Why}} ->
            throw({failed, [io_lib:format("~ts:~w: ~ts", [Shown, Line, Mod:format_error(Why)])]});
        {error, Posix} ->
            throw({failed, [io_lib:format("~ts: ~ts", [Shown, file:format_error(Posix)])]})
    end.

%% The release: NAME.rel, start.boot and start.script by systools, sys.config, under
%% OUT/releases/VSN. Every application the given ones need (transitively) is in it, with
%% the compiler and our chrysopolis loaded as in the image's own start.boot.
release(Main, Vsn, Apps, Available, Get, Config, Say) ->
    Deps = fun(App) -> deps(App, Apps, Get) end,
    Needed = closure([kernel, stdlib | [N || {N, _, _, _} <- Apps]], Deps, []),
    Load = [A || A <- [compiler, chrysopolis], not lists:member(A, Needed),
                 maps:is_key(A, Available)],
    Rel = {release, {atom_to_list(Main), Vsn}, {erts, Get(erts_vsn)},
           [{A, maps:get(A, Available)} || A <- Needed] ++
               [{A, maps:get(A, Available), load} || A <- Load]},
    RelDir = filename:join([Get(out), "releases", Vsn]),
    ok = filelib:ensure_path(RelDir),
    RelFile = filename:join(RelDir, atom_to_list(Main)),
    ok = file:write_file(RelFile ++ ".rel", io_lib:format("~tp.~n", [Rel])),
    ok = file:write_file(filename:join(RelDir, "sys.config"), Config),
    Path = [filename:join([L, "*", "ebin"]) || L <- [Get(otp_lib) | Get(lib_dirs)]] ++
        [filename:join([Get(out), "lib", "*", "ebin"])],
    Opts = [{path, Path}, {outdir, RelDir}, {script_name, "start"}, silent, no_dot_erlang,
            no_warn_sasl],
    case systools:make_script(RelFile, Opts) of
        {ok, Mod, Warnings} ->
            [Say("warning", string:trim(Mod:format_warning(Warnings))) || Warnings =/= []],
            [Say("app", io_lib:format("~s ~s", [A, maps:get(A, Available)])) || A <- Needed],
            Say("release", io_lib:format("~s ~s", [Main, Vsn])),
            ok;
        {error, Mod, Why} ->
            throw({failed, [io_lib:format("systools:make_script: ~ts",
                                          [string:trim(Mod:format_error(Why))])]})
    end.

deps(App, Apps, Get) ->
    Props = case lists:keyfind(App, 1, Apps) of
        {_, _, {_, _, _, P, _, _}, _} -> P;
        false ->
            Libs = [Get(otp_lib) | Get(lib_dirs)],
            Name = atom_to_list(App),
            case [F || L <- Libs,
                       F <- filelib:wildcard(filename:join([L, Name ++ "-*", "ebin",
                                                            Name ++ ".app"]))] of
                [F | _] ->
                    {ok, [{application, _, P}]} = file:consult(F),
                    P;
                [] ->
                    throw({failed, [io_lib:format("application ~s is needed but not on the "
                                                  "disk", [App])]})
            end
    end,
    proplists:get_value(applications, Props, []) ++
        proplists:get_value(included_applications, Props, []).

closure([], _Deps, Seen) -> lists:reverse(Seen);
closure([A | Rest], Deps, Seen) ->
    case lists:member(A, Seen) of
        true -> closure(Rest, Deps, Seen);
        false -> closure(Deps(A) ++ Rest, Deps, [A | Seen])
    end.

copy_tree(From, To) ->
    case filelib:is_dir(From) of
        false -> ok;
        true ->
            [begin
                 Dest = filename:join(To, lists:nthtail(length(From) + 1, F)),
                 ok = filelib:ensure_dir(Dest),
                 {ok, _} = file:copy(F, Dest)
             end || F <- filelib:wildcard(filename:join(From, "**")), filelib:is_regular(F)],
            ok
    end.
